//! Creating a task: the bundle, the shim, the shim's Create — and, when any step fails,
//! undoing all of it, so that a failed create leaves no shim, mount, runtime state or
//! bundle behind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::containerd::task::v2::{CreateTaskRequest, DeleteRequest, ShutdownRequest};
use berth_proto::containerd::types::Mount;
use berth_shim::client::{connect, launch, Assignment, StartArgs, TaskClient};

use super::bundle::{self, read_shim_pid};
use super::process::stop_process;
use super::{key, LiveTask, Slot, TaskError, TaskManager};

/// How long a failed create waits for each cleanup call to the shim.
const ROLLBACK_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failed create waits for the shim to exit after Shutdown before killing it.
const SHIM_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Everything needed to create a task.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// Its namespace.
    pub namespace: String,
    /// The container id (the task takes the same id).
    pub id: String,
    /// The container's OCI spec, JSON exactly as the client stored it.
    pub spec_json: Vec<u8>,
    /// Root filesystem mounts, performed by the shim onto `bundle/rootfs`.
    pub rootfs: Vec<Mount>,
    /// Stdin fifo path or URI; empty for none.
    pub stdin: String,
    /// Stdout fifo path or URI; empty for none.
    pub stdout: String,
    /// Stderr fifo path or URI; empty for none.
    pub stderr: String,
    /// Whether the process gets a terminal.
    pub terminal: bool,
    /// Runtime options (`containerd.runc.v1.Options`), if any.
    pub options: Option<prost_types::Any>,
}

/// Holds a task id while its Create runs; frees it on drop unless the task was registered.
struct Reservation {
    manager: TaskManager,
    namespace: String,
    id: String,
    registered: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.registered {
            let mut tasks = self.manager.registry();
            let k = key(&self.namespace, &self.id);
            if matches!(tasks.get(&k), Some(Slot::Creating)) {
                tasks.remove(&k);
            }
        }
    }
}

/// How far a create got, to know what to undo.
#[derive(Default)]
struct Progress {
    bundle_made: bool,
    shim_launched: bool,
    client: Option<TaskClient>,
}

impl TaskManager {
    /// Creates task `new.id`: writes its bundle, launches its shim and has the shim create
    /// the container. Returns the init process's pid. A second task for the same container
    /// is refused (`AlreadyExists`). Runs to completion (or complete rollback) even if the
    /// caller goes away midway.
    pub async fn create(&self, new: NewTask) -> Result<u32, TaskError> {
        let reservation = self.reserve(&new.namespace, &new.id)?;
        self.wait_for_teardown(&new.namespace, &new.id).await;
        let manager = self.clone();
        tokio::spawn(async move { manager.create_reserved(new, reservation).await })
            .await
            .map_err(|e| TaskError::FailedPrecondition(format!("task create was aborted: {e}")))?
    }

    /// Takes the id, or says who has it.
    fn reserve(&self, ns: &str, id: &str) -> Result<Reservation, TaskError> {
        let mut tasks = self.registry();
        let k = key(ns, id);
        if let Some(slot) = tasks.get(&k) {
            let state = match slot {
                Slot::Creating => "is being created",
                Slot::Live(_) => "exists",
                Slot::Exited(_) => "exists (stopped; delete it first)",
            };
            return Err(TaskError::AlreadyExists(format!(
                "task {id}: a task for this container already {state}"
            )));
        }
        tasks.insert(k, Slot::Creating);
        Ok(Reservation {
            manager: self.clone(),
            namespace: ns.to_string(),
            id: id.to_string(),
            registered: false,
        })
    }

    async fn create_reserved(
        &self,
        new: NewTask,
        mut reservation: Reservation,
    ) -> Result<u32, TaskError> {
        let layout = &self.inner.layout;
        let bundle = layout.bundle(&new.namespace, &new.id);
        let socket = layout.socket(&new.namespace, &new.id);
        let mut progress = Progress::default();
        match self
            .create_steps(&new, &bundle, &socket, &mut progress)
            .await
        {
            Ok((client, pid)) => {
                let task = Arc::new(LiveTask::new(
                    new.namespace.clone(),
                    new.id.clone(),
                    bundle,
                    socket,
                    client,
                ));
                self.registry()
                    .insert(key(&new.namespace, &new.id), Slot::Live(task.clone()));
                reservation.registered = true;
                self.watch(task);
                tracing::info!(namespace = %new.namespace, id = %new.id, pid, "task created");
                Ok(pid)
            }
            Err(error) => {
                tracing::info!(namespace = %new.namespace, id = %new.id, %error,
                    "task create failed; undoing it");
                self.roll_back(&new, &bundle, &socket, progress).await;
                Err(error)
            }
        }
    }

    async fn create_steps(
        &self,
        new: &NewTask,
        bundle: &Path,
        socket: &Path,
        progress: &mut Progress,
    ) -> Result<(TaskClient, u32), TaskError> {
        let io = |what: &str| {
            let what = what.to_string();
            let task = new.id.clone();
            move |source| TaskError::Io { task, what, source }
        };
        // The id is free, so any bundle on disk is a leftover that nothing runs from.
        if bundle.exists() {
            bundle::remove_bundle(bundle).map_err(|detail| TaskError::Io {
                task: new.id.clone(),
                what: "removing a leftover bundle".into(),
                source: std::io::Error::other(detail),
            })?;
        }
        bundle::create_bundle(bundle, &new.spec_json).map_err(io("writing the bundle"))?;
        progress.bundle_made = true;
        self.inner
            .layout
            .ensure_socket_dir()
            .map_err(io("making the shim socket directory"))?;

        let spare = self.take_spare();
        // A replacement (or a first spare) is launched once this task is likely started,
        // not now: the launch would compete for the CPU with the runtime creating it.
        self.refill_spares_soon();
        progress.shim_launched = true;
        let started = std::time::Instant::now();
        let assigned = match spare {
            Some(spare) => {
                let assignment = Assignment {
                    namespace: new.namespace.clone(),
                    id: new.id.clone(),
                    bundle: bundle.to_path_buf(),
                    runtime_root: self.inner.layout.runtime_root(&new.namespace),
                    socket: socket.to_path_buf(),
                };
                self.assign_spare(spare, &assignment).await
            }
            None => None,
        };
        let from_spare = assigned.is_some();
        let mut client = match assigned {
            Some(client) => client,
            None => self.launch_shim(new, bundle, socket).await?,
        };
        let launched = started.elapsed();
        bundle::write_address(bundle, socket).map_err(io("writing the address file"))?;
        progress.client = Some(client.clone());

        let created = client
            .create(CreateTaskRequest {
                id: new.id.clone(),
                bundle: bundle.display().to_string(),
                rootfs: new.rootfs.clone(),
                terminal: new.terminal,
                stdin: new.stdin.clone(),
                stdout: new.stdout.clone(),
                stderr: new.stderr.clone(),
                checkpoint: String::new(),
                parent_checkpoint: String::new(),
                options: new.options.clone(),
            })
            .await
            .map_err(|status| TaskError::shim(&new.id, status))?;
        tracing::debug!(id = %new.id, from_spare, ?launched, total = ?started.elapsed(),
            "shim ready and task created");
        Ok((client, created.into_inner().pid))
    }

    /// Launches a shim for task `new` (no spare was at hand) and connects to it.
    async fn launch_shim(
        &self,
        new: &NewTask,
        bundle: &Path,
        socket: &Path,
    ) -> Result<TaskClient, TaskError> {
        let settings = &self.inner.settings;
        let client_error = |source| TaskError::Client {
            task: new.id.clone(),
            source,
        };
        let address = launch(&StartArgs {
            shim_binary: settings.shim_binary.clone(),
            namespace: new.namespace.clone(),
            id: new.id.clone(),
            bundle: bundle.to_path_buf(),
            socket: socket.to_path_buf(),
            publish_address: settings.publish_address.clone(),
            runtime_root: self.inner.layout.runtime_root(&new.namespace),
            runtime_binary: None,
            log_level: settings.log_level.clone(),
        })
        .await
        .map_err(client_error)?;
        connect(&address.socket).await.map_err(client_error)
    }

    /// Undoes a failed create, step by step, ignoring what fails (each step logs).
    async fn roll_back(&self, new: &NewTask, bundle: &Path, socket: &Path, progress: Progress) {
        if let Some(mut client) = progress.client {
            let deleted = tokio::time::timeout(
                ROLLBACK_CALL_TIMEOUT,
                client.delete(DeleteRequest {
                    id: new.id.clone(),
                    exec_id: String::new(),
                }),
            )
            .await;
            tracing::debug!(id = %new.id, ?deleted, "rollback: shim delete");
            let shutdown = tokio::time::timeout(
                ROLLBACK_CALL_TIMEOUT,
                client.shutdown(ShutdownRequest {
                    id: new.id.clone(),
                    now: true,
                }),
            )
            .await;
            tracing::debug!(id = %new.id, ?shutdown, "rollback: shim shutdown");
        }
        if progress.shim_launched {
            // The shim must be gone before the runtime state and the bundle are removed.
            if let Some(pid) = read_shim_pid(bundle) {
                stop_process(pid, SHIM_EXIT_WAIT).await;
            }
            // Forced runtime delete, unmount and bundle removal, as for a dead shim.
            let _ = self
                .clean_up_after_dead_shim(&new.namespace, &new.id, bundle, socket)
                .await;
        } else if progress.bundle_made {
            if let Err(e) = bundle::remove_bundle(bundle) {
                tracing::error!(id = %new.id, error = %e, "rollback: could not remove the bundle");
            }
        }
    }
}
