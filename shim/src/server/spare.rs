//! The spare shim: a daemon shim berthd starts before any task needs it, so that creating a
//! task does not wait for a shim to be launched (a fork, an exec and a socket handshake,
//! about 4 ms of every `ctr run`).
//!
//! A spare serves the task API and the `berth.shim.v1.Spare` service on a socket of its
//! own. Until `Assign` gives it a task it has none: task calls are refused, it has no log
//! and no bundle. `Assign` does what `berth-shim start` does for a task shim — the bundle
//! becomes its working directory, it logs to `bundle/shim.log`, writes `bundle/shim.pid` —
//! and renames its socket to the task's, so that from then on it is an ordinary task shim
//! (only its command line still says `spare`). A spare whose berthd exits before assigning
//! it a task exits too: it watches berthd's pid through a pidfd.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use berth_proto::berth::shim::v1::spare_server::Spare;
use berth_proto::berth::shim::v1::{AssignRequest, AssignResponse};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::server::daemon::{start_task, SHIM_PID_FILE};
use crate::server::reaper::Reaper;
use crate::server::task::Task;
use crate::server::{logging, RuntimeSettings, ShimError, SpareConfig, TaskIdentity};

/// The task a shim serves: set at start for a task shim, at `Assign` for a spare.
#[derive(Debug, Default)]
pub(crate) struct TaskCell {
    task: OnceLock<Arc<Task>>,
    assigned: Notify,
}

impl TaskCell {
    /// A cell holding `task` from the start.
    pub(crate) fn holding(task: Arc<Task>) -> TaskCell {
        let cell = TaskCell::default();
        let _ = cell.task.set(task);
        cell
    }

    /// The task, if the shim has one.
    pub(crate) fn get(&self) -> Option<&Arc<Task>> {
        self.task.get()
    }

    /// The task, or the error a task call gets from a spare that has none yet.
    pub(crate) fn task(&self) -> Result<&Arc<Task>, ShimError> {
        self.get().ok_or_else(|| {
            ShimError::FailedPrecondition("this spare shim has not been given a task".into())
        })
    }

    /// Completes with the task once the shim has one.
    pub(crate) async fn assigned(&self) -> Arc<Task> {
        loop {
            let notified = self.assigned.notified();
            if let Some(task) = self.get() {
                return task.clone();
            }
            notified.await;
        }
    }

    fn set(&self, task: Arc<Task>) {
        let _ = self.task.set(task);
        self.assigned.notify_waiters();
    }
}

/// The `Spare` service: `Assign`.
#[derive(Debug)]
pub(crate) struct SpareService {
    config: SpareConfig,
    cell: Arc<TaskCell>,
    reaper: Arc<Reaper>,
    /// Held while an `Assign` runs, so two cannot both take the shim.
    assigning: tokio::sync::Mutex<()>,
}

impl SpareService {
    /// The service of a spare started with `config`, setting `cell` when assigned.
    pub(crate) fn new(config: SpareConfig, cell: Arc<TaskCell>, reaper: Arc<Reaper>) -> Self {
        SpareService {
            config,
            cell,
            reaper,
            assigning: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes on the task `request` names; on failure the shim is left without a task.
    fn assign(&self, request: AssignRequest) -> Result<u32, ShimError> {
        if let Some(task) = self.cell.get() {
            return Err(ShimError::AlreadyExists(format!(
                "this shim already serves task {:?}",
                task.identity().id
            )));
        }
        let binary = (!request.runtime_binary.is_empty()).then(|| request.runtime_binary.into());
        let config = self.config.assigned(
            TaskIdentity {
                namespace: request.namespace,
                id: request.id,
                bundle: request.bundle.into(),
            },
            RuntimeSettings {
                root: request.runtime_root.into(),
                binary,
            },
            PathBuf::from(request.socket),
        );
        config.validate()?;
        if std::os::unix::net::UnixStream::connect(&config.socket).is_ok() {
            return Err(ShimError::AlreadyExists(format!(
                "another shim already listens on {}",
                config.socket.display()
            )));
        }
        let bundle = &config.task.bundle;
        std::env::set_current_dir(bundle).map_err(ShimError::io("enter the bundle", bundle))?;
        logging::init(&config.task, config.log_level)?;
        let pid = std::process::id();
        berth_runtime::write_json_atomically(&bundle.join(SHIM_PID_FILE), &pid)?;
        // The last step that can fail: from here on the shim is the task's.
        std::fs::rename(&self.config.socket, &config.socket)
            .map_err(ShimError::io("move the spare's socket to", &config.socket))?;
        self.cell.set(start_task(&config, &self.reaper));
        tracing::info!(socket = %config.socket.display(), pid, "spare shim took on the task");
        Ok(pid)
    }
}

#[tonic::async_trait]
impl Spare for SpareService {
    async fn assign(
        &self,
        request: Request<AssignRequest>,
    ) -> Result<Response<AssignResponse>, Status> {
        let _one_at_a_time = self.assigning.lock().await;
        match SpareService::assign(self, request.into_inner()) {
            Ok(pid) => Ok(Response::new(AssignResponse { pid })),
            Err(error) => Err(error.into()),
        }
    }
}

/// A watch on berthd's process: readable once it has exited.
pub(crate) struct SupervisorWatch(AsyncFd<OwnedFd>);

impl SupervisorWatch {
    /// Watches process `pid` (berthd, alive: it is waiting for this spare to get ready).
    pub(crate) fn open(pid: i32) -> Result<SupervisorWatch, ShimError> {
        let target = rustix::process::Pid::from_raw(pid).ok_or_else(|| {
            ShimError::InvalidArgument(format!("supervisor pid {pid} is not a process id"))
        })?;
        let fd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::NONBLOCK)
            .map_err(|e| ShimError::io("watch berthd's process", "")(e.into()))?;
        // SAFETY: the pidfd is owned by the AsyncFd from here on, and nothing else closes or
        // reuses its descriptor number while it is registered.
        let watch = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| ShimError::io("register berthd's pidfd", "")(e.into()))?;
        Ok(SupervisorWatch(watch))
    }

    /// Completes when berthd has exited.
    pub(crate) async fn exited(&self) {
        // A pidfd only ever becomes readable when its process exits; an error means it can
        // no longer be watched, which is treated the same way.
        let _ = self.0.readable().await;
    }
}
