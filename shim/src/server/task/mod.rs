//! The task a shim serves: its init process, its exec processes, and every transition of
//! their lives (create, start, exec, pause, resume, kill, exit, delete), with the events
//! each one publishes.
//!
//! Two locks: `state` (a plain mutex, never held across an await) guards the processes;
//! `lifecycle` (async) serialises the operations that run the runtime and change what
//! exists (create, start, exec, delete, pause, resume, update), so two of them never
//! interleave. Kill, Wait, State and the reaper never take `lifecycle`: a Wait may be
//! pending while Start runs, and a Kill must get through while anything else is going on.
//!
//! The operations are grouped by theme: `lifecycle` (create, start, exits, wait, delete of
//! the init), `exec` (exec processes), `control` (signals, pause, resources, stdio).

mod control;
mod exec;
mod lifecycle;

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use berth_proto::containerd::task::v2::{ConnectResponse, DeleteResponse, StateResponse};
use berth_runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client::ExitInfo;
use crate::server::events::EventPublisher;
use crate::server::exit_file::timestamp;
use crate::server::process::Process;
use crate::server::reaper::Reaper;
use crate::server::{RuntimeSettings, ShimError, TaskIdentity};

/// Exits of unknown pids kept for a process whose pid is not known yet (an exec that ends
/// before `runc exec` returns); older ones are forgotten.
const MAX_UNCLAIMED_EXITS: usize = 64;

/// How long Delete waits for a created (never started) init to be reaped once the runtime
/// has removed it.
const DELETE_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Highest signal number (real-time signals included).
const MAX_SIGNAL: u32 = 64;

/// What the shim knows about its task.
#[derive(Debug, Default)]
struct TaskState {
    /// The runtime, configured at Create from the task's options.
    runtime: Option<Runtime>,
    /// Start releases the init through runc's exec fifo instead of running `runc start`:
    /// the runtime is plain runc and the spec has no poststart hooks.
    start_through_exec_fifo: bool,
    /// The init, from Create on.
    init: Option<Process>,
    /// Exec processes by exec id.
    execs: BTreeMap<String, Process>,
    /// The init was deleted: the task is gone.
    deleted: bool,
    /// Recent exits nobody claimed, with their pid.
    unclaimed: VecDeque<ExitInfo>,
    /// Console sockets made so far (each gets its own name).
    consoles: u32,
    /// Watches the container's cgroup for OOM kills.
    oom_watch: Option<JoinHandle<()>>,
    /// The deleted task's root filesystem, detached from the mount table; held until the
    /// shim exits so the kernel's flush of it does not delay the Delete reply.
    detached_rootfs: Option<OwnedFd>,
    /// The runtime's delete of an exited container, left for after the Delete reply: it
    /// runs once berthd has shut the shim down, before the shim exits.
    runtime_cleanup: Option<PendingRuntimeDelete>,
}

/// The runtime's delete of an exited init's container, run by [`Task::finish_cleanup`].
#[derive(Debug)]
struct PendingRuntimeDelete {
    runtime: Runtime,
    id: String,
}

impl TaskState {
    /// The live process with host pid `pid` (one that has not exited yet).
    fn live_process_mut(&mut self, pid: u32) -> Option<&mut Process> {
        let live = |p: &&mut Process| p.pid == pid && p.exit().is_none();
        if let Some(init) = self.init.as_mut().filter(live) {
            return Some(init);
        }
        self.execs.values_mut().find(live)
    }

    /// Takes the unclaimed exit of `pid` that happened at or after `since`.
    fn take_unclaimed(&mut self, pid: u32, since: SystemTime) -> Option<ExitInfo> {
        let index = self
            .unclaimed
            .iter()
            .position(|exit| exit.pid == pid && exit.exited_at >= since)?;
        self.unclaimed.remove(index)
    }

    fn remember_unclaimed(&mut self, exit: ExitInfo) {
        if self.unclaimed.len() >= MAX_UNCLAIMED_EXITS {
            self.unclaimed.pop_front();
        }
        self.unclaimed.push_back(exit);
    }
}

/// The task of this shim and everything needed to drive it.
#[derive(Debug)]
pub(crate) struct Task {
    identity: TaskIdentity,
    settings: RuntimeSettings,
    /// The shim's socket; console sockets are made next to it (short paths).
    socket: PathBuf,
    reaper: Arc<Reaper>,
    events: Arc<EventPublisher>,
    state: Mutex<TaskState>,
    lifecycle: tokio::sync::Mutex<()>,
    shutdown: Notify,
}

impl Task {
    /// A shim's task, not created yet.
    pub(crate) fn new(
        identity: TaskIdentity,
        settings: RuntimeSettings,
        socket: PathBuf,
        reaper: Arc<Reaper>,
        events: Arc<EventPublisher>,
    ) -> Task {
        Task {
            identity,
            settings,
            socket,
            reaper,
            events,
            state: Mutex::new(TaskState::default()),
            lifecycle: tokio::sync::Mutex::new(()),
            shutdown: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TaskState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn id(&self) -> &str {
        &self.identity.id
    }

    /// The task served.
    pub(crate) fn identity(&self) -> &TaskIdentity {
        &self.identity
    }

    /// The shim's socket.
    pub(crate) fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Where the task's events go.
    pub(crate) fn events(&self) -> &Arc<EventPublisher> {
        &self.events
    }

    /// Refuses a request for another container than the shim's.
    pub(crate) fn check_id(&self, id: &str) -> Result<(), ShimError> {
        if id != self.id() {
            return Err(ShimError::NotFound(format!(
                "this shim serves task {:?}, not {id:?}",
                self.id()
            )));
        }
        Ok(())
    }

    /// Completes when Shutdown allowed the shim to exit.
    pub(crate) async fn shutdown_requested(&self) {
        self.shutdown.notified().await;
    }

    /// Waits for cleanup that a Delete left running after its reply (the runtime's delete
    /// of the exited container), so the shim never exits before it is done. It waits
    /// until the shim is shut down: by then berthd has answered its client, and the runtime
    /// process no longer competes with that answer for the CPU.
    pub(crate) async fn finish_cleanup(&self) {
        let pending = self.lock().runtime_cleanup.take();
        if let Some(PendingRuntimeDelete { runtime, id }) = pending {
            let deleted = tokio::task::spawn_blocking(move || runtime.delete(&id, false)).await;
            match deleted {
                Ok(Ok(())) | Ok(Err(berth_runtime::Error::NotFound { .. })) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "the runtime could not delete the exited container")
                }
                Err(error) => tracing::error!(%error, "the runtime's delete did not finish"),
            }
        }
    }

    /// The runtime of a created task.
    fn runtime(&self) -> Result<Runtime, ShimError> {
        let state = self.lock();
        if state.deleted {
            return Err(self.deleted_error());
        }
        state
            .runtime
            .clone()
            .ok_or_else(|| ShimError::NotFound(format!("task {} is not created", self.id())))
    }

    fn deleted_error(&self) -> ShimError {
        ShimError::NotFound(format!("task {} was deleted", self.id()))
    }

    fn not_created(&self) -> ShimError {
        ShimError::NotFound(format!("task {} is not created", self.id()))
    }

    fn exec_mut<'a>(
        &self,
        state: &'a mut TaskState,
        exec_id: &str,
    ) -> Result<&'a mut Process, ShimError> {
        state.execs.get_mut(exec_id).ok_or_else(|| {
            ShimError::NotFound(format!(
                "exec process {exec_id} does not exist in task {}",
                self.id()
            ))
        })
    }

    /// The process named by `exec_id` (the init when empty).
    fn process_mut<'a>(
        &self,
        state: &'a mut TaskState,
        exec_id: &str,
    ) -> Result<&'a mut Process, ShimError> {
        if state.deleted {
            return Err(self.deleted_error());
        }
        if exec_id.is_empty() {
            state.init.as_mut().ok_or_else(|| self.not_created())
        } else {
            self.exec_mut(state, exec_id)
        }
    }

    /// A fresh console socket path next to the shim's socket.
    fn next_console_path(&self) -> PathBuf {
        let mut state = self.lock();
        state.consoles += 1;
        self.socket.with_extension(format!("c{}", state.consoles))
    }

    // ----- state and shim control -------------------------------------------------------

    /// State of the init or an exec process.
    pub(crate) fn state(&self, id: &str, exec_id: &str) -> Result<StateResponse, ShimError> {
        self.check_id(id)?;
        let mut state = self.lock();
        let process = self.process_mut(&mut state, exec_id)?;
        let exit = process.exit();
        Ok(StateResponse {
            id: self.id().to_string(),
            bundle: self.identity.bundle.display().to_string(),
            pid: process.pid,
            status: process.phase.status() as i32,
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map_or(0, |exit| exit.exit_status),
            exited_at: exit.map(|exit| timestamp(exit.exited_at)),
            exec_id: exec_id.to_string(),
        })
    }

    /// Connect: the shim's and the task's pids.
    pub(crate) fn connect(&self, id: &str) -> Result<ConnectResponse, ShimError> {
        self.check_id(id)?;
        let state = self.lock();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: state.init.as_ref().map_or(0, |init| init.pid),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    /// Shutdown: lets the shim exit once its task is deleted (or was never created), or at
    /// once with `now`. Otherwise the shim keeps serving.
    pub(crate) fn shutdown(&self, id: &str, now: bool) -> Result<(), ShimError> {
        self.check_id(id)?;
        let state = self.lock();
        if now || state.deleted || state.init.is_none() {
            tracing::info!(now, "shutting down");
            self.shutdown.notify_one();
        } else {
            tracing::info!("shutdown ignored: the task still exists");
        }
        Ok(())
    }
}

fn delete_response(exit: &ExitInfo) -> DeleteResponse {
    DeleteResponse {
        pid: exit.pid,
        exit_status: exit.exit_status,
        exited_at: Some(timestamp(exit.exited_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclaimed_exits_are_bounded_and_claimed_only_when_recent() {
        let mut state = TaskState::default();
        let old = SystemTime::now() - Duration::from_secs(60);
        state.remember_unclaimed(ExitInfo {
            pid: 7,
            exit_status: 1,
            exited_at: old,
        });
        let since = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(state.take_unclaimed(7, since), None);
        for pid in 0..(MAX_UNCLAIMED_EXITS as u32 + 5) {
            state.remember_unclaimed(ExitInfo {
                pid,
                exit_status: 0,
                exited_at: SystemTime::now(),
            });
        }
        assert_eq!(state.unclaimed.len(), MAX_UNCLAIMED_EXITS);
        assert!(
            state.take_unclaimed(2, since).is_none(),
            "the oldest were forgotten"
        );
        assert_eq!(state.take_unclaimed(40, since).unwrap().pid, 40);
    }
}
