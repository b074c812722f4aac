//! Create, start, exits, Wait and Delete of the task's init.

use std::time::SystemTime;

use berth_proto::containerd::events::{
    TaskCreate, TaskDelete, TaskExit, TaskIo, TaskOom, TaskStart,
};
use berth_proto::containerd::task::v2::{CreateTaskRequest, DeleteResponse, WaitResponse};
use berth_runtime::{Runtime, RuntimeConfig};
use tokio::task::JoinHandle;

use crate::client::{ExitInfo, UNKNOWN_EXIT_STATUS};
use crate::server::events::topics;
use crate::server::exit_file::{self, timestamp};
use crate::server::jobs::CreateJob;
use crate::server::process::{wait_for_exit, Phase, Process};
use crate::server::runtime_options::RuntimeOptions;
use crate::server::stdio::{ProcessIo, StdioPaths};
use crate::server::{oom, ShimError};

use super::{delete_response, PendingRuntimeDelete, Task, DELETE_EXIT_WAIT};

impl Task {
    // ----- create and start -------------------------------------------------------------

    /// Create: mounts the root filesystem, opens stdio and runs `runc create`.
    pub(crate) async fn create(&self, request: CreateTaskRequest) -> Result<u32, ShimError> {
        let _operation = self.lifecycle.lock().await;
        self.check_id(&request.id)?;
        {
            let state = self.lock();
            if state.init.is_some() || state.deleted {
                return Err(ShimError::AlreadyExists(format!(
                    "task {} already exists",
                    self.id()
                )));
            }
        }
        if !request.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(
                "restoring a task from a checkpoint is not supported by berth-shim".into(),
            ));
        }
        let options = RuntimeOptions::from_any(request.options.as_ref())?;
        let runtime = Runtime::with_monitor(
            RuntimeConfig {
                binary: options.binary(&self.settings),
                root: self.settings.root.clone(),
                log: None,
                systemd_cgroup: options.systemd_cgroup,
            },
            self.reaper.clone(),
        )?;
        options.save(&self.identity.bundle)?;
        let start_through_exec_fifo = options.binary_name.is_empty()
            && self.settings.binary.is_none()
            && !has_poststart_hooks(&self.identity.bundle);
        tracing::info!(runtime = %runtime.binary().display(), "creating task");

        let stdio = StdioPaths {
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            terminal: request.terminal,
        };
        let job = CreateJob {
            task: self.identity.clone(),
            runtime: runtime.clone(),
            mounts: request
                .rootfs
                .iter()
                .map(|mount| berth_snapshot::Mount {
                    kind: mount.r#type.clone(),
                    source: mount.source.clone(),
                    options: mount.options.clone(),
                })
                .collect(),
            stdio: stdio.clone(),
            console_socket: request.terminal.then(|| self.next_console_path()),
            no_pivot: options.no_pivot_root,
        };
        let began = SystemTime::now();
        let spawned = tokio::task::spawn_blocking(move || job.run()).await??;
        let pid = spawned.pid;
        let io = match ProcessIo::start(spawned.shim_side, spawned.console) {
            Ok(io) => io,
            Err(error) => {
                self.undo_create(runtime).await;
                return Err(error);
            }
        };

        let mut init = Process::new("", pid, stdio.clone());
        init.io = Some(io);
        let mut state = self.lock();
        state.runtime = Some(runtime);
        state.start_through_exec_fifo = start_through_exec_fifo;
        let early_exit = state.take_unclaimed(pid, began);
        state.oom_watch = Some(self.watch_oom(pid));
        let init = state.init.insert(init);
        self.events.publish(
            topics::TASK_CREATE,
            &TaskCreate {
                container_id: self.id().to_string(),
                bundle: self.identity.bundle.display().to_string(),
                rootfs: request.rootfs,
                io: Some(TaskIo {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                }),
                checkpoint: request.checkpoint,
                pid,
            },
        );
        if let Some(exit) = early_exit {
            self.finish_exit(init, exit);
        }
        tracing::info!(pid, "task created");
        Ok(pid)
    }

    /// Removes a container whose creation failed after the runtime made it.
    async fn undo_create(&self, runtime: Runtime) {
        let id = self.id().to_string();
        let rootfs = self.identity.rootfs();
        let undone = tokio::task::spawn_blocking(move || {
            let _ = runtime.delete(&id, true);
            berth_snapshot::mount::unmount_all(&rootfs)
        })
        .await;
        if !matches!(undone, Ok(Ok(()))) {
            tracing::warn!("could not fully undo a failed create");
        }
    }

    /// Starts a task on OOM events of the container whose init is `pid`.
    fn watch_oom(&self, pid: u32) -> JoinHandle<()> {
        let events = self.events.clone();
        let id = self.id().to_string();
        tokio::spawn(oom::watch(pid, move || {
            tracing::warn!("the container hit its memory limit (OOM kill)");
            events.publish(
                topics::TASK_OOM,
                &TaskOom {
                    container_id: id.clone(),
                },
            );
        }))
    }

    /// Start: `runc start` for the init, `runc exec` for an exec process.
    pub(crate) async fn start(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        self.check_id(id)?;
        let _operation = self.lifecycle.lock().await;
        if exec_id.is_empty() {
            self.start_init().await
        } else {
            self.start_exec(exec_id).await
        }
    }

    async fn start_init(&self) -> Result<u32, ShimError> {
        let runtime = self.runtime()?;
        let (through_fifo, pid) = {
            let mut state = self.lock();
            let through_fifo = state.start_through_exec_fifo;
            let init = state.init.as_mut().ok_or_else(|| self.not_created())?;
            match init.phase {
                Phase::Created => init.starting = true,
                Phase::Stopped => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "task {} has already exited",
                        self.id()
                    )))
                }
                _ => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "task {} is already started",
                        self.id()
                    )))
                }
            }
            (through_fifo, init.pid)
        };
        let id = self.id().to_string();
        let started = tokio::task::spawn_blocking(move || {
            if through_fifo {
                runtime.start_through_exec_fifo(&id, pid)
            } else {
                runtime.start(&id)
            }
        })
        .await;
        let mut state = self.lock();
        let init = state.init.as_mut().ok_or_else(|| self.not_created())?;
        init.starting = false;
        let result = match started {
            Ok(Ok(())) => {
                if init.phase == Phase::Created {
                    init.phase = Phase::Running;
                }
                self.events.publish(
                    topics::TASK_START,
                    &TaskStart {
                        container_id: self.id().to_string(),
                        pid: init.pid,
                    },
                );
                tracing::info!(pid = init.pid, "task started");
                Ok(init.pid)
            }
            Ok(Err(error)) => Err(error.into()),
            Err(error) => Err(error.into()),
        };
        if let Some(exit) = init.pending_exit.take() {
            self.finish_exit(init, exit);
        }
        result
    }

    // ----- exits ------------------------------------------------------------------------

    /// Called by the reaper for every child that is not a runtime command.
    pub(crate) fn on_exit(&self, pid: i32, wait_status: i32) {
        let Ok(pid) = u32::try_from(pid) else {
            return;
        };
        let exit = exit_file::exit_now(pid, wait_status);
        let mut state = self.lock();
        match state.live_process_mut(pid) {
            Some(process) if process.starting => process.pending_exit = Some(exit),
            Some(process) => self.finish_exit(process, exit),
            None => state.remember_unclaimed(exit),
        }
    }

    /// Records `exit` of `process`, writes the init's exit file, publishes TaskExit.
    pub(super) fn finish_exit(&self, process: &mut Process, exit: ExitInfo) {
        if !process.record_exit(exit) {
            return;
        }
        tracing::info!(
            exec_id = process.exec_id,
            pid = exit.pid,
            exit_status = exit.exit_status,
            "process exited"
        );
        if process.is_init() {
            if let Err(error) = exit_file::write(&self.identity.bundle, &exit) {
                tracing::error!(%error, "could not write the exit file");
            }
        }
        self.events.publish(
            topics::TASK_EXIT,
            &TaskExit {
                container_id: self.id().to_string(),
                id: if process.is_init() {
                    self.id().to_string()
                } else {
                    process.exec_id.clone()
                },
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at: Some(timestamp(exit.exited_at)),
            },
        );
    }

    /// Wait: blocks until the process exits.
    pub(crate) async fn wait(&self, id: &str, exec_id: &str) -> Result<WaitResponse, ShimError> {
        self.check_id(id)?;
        let receiver = {
            let mut state = self.lock();
            self.process_mut(&mut state, exec_id)?.watch_exit()
        };
        let exit = wait_for_exit(receiver).await.ok_or_else(|| {
            ShimError::NotFound(format!("process {exec_id:?} was deleted before it exited"))
        })?;
        Ok(WaitResponse {
            exit_status: exit.exit_status,
            exited_at: Some(timestamp(exit.exited_at)),
        })
    }

    // ----- delete -----------------------------------------------------------------------

    /// Delete: of the init, `runc delete` and unmount (the task is then gone); of an
    /// exec, forgetting it. Either must have exited (or never started).
    pub(crate) async fn delete(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<DeleteResponse, ShimError> {
        self.check_id(id)?;
        let _operation = self.lifecycle.lock().await;
        if !exec_id.is_empty() {
            return self.delete_exec(exec_id);
        }
        let (runtime, exit_watch, pid, exited) = {
            let mut state = self.lock();
            let init = self.process_mut(&mut state, "")?;
            if matches!(init.phase, Phase::Running | Phase::Paused) {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is still running; kill it before deleting it",
                    self.id()
                )));
            }
            let watch = init.watch_exit();
            let pid = init.pid;
            let exited = init.exit().is_some();
            let runtime = state.runtime.clone().ok_or_else(|| self.not_created())?;
            (runtime, watch, pid, exited)
        };
        let id = self.id().to_string();
        let rootfs = self.identity.rootfs();
        // The root filesystem is detached, not unmounted: it leaves the mount table now,
        // and the flush of its upper layer waits until the shim exits after replying.
        let (rootfs_pin, runtime_cleanup) = if exited {
            // The init is gone, so nothing runs in the container: the runtime's own
            // cleanup (its state dir, the cgroup) is not something the client waits on.
            // It runs once the shim is shut down, before it exits; a new task of this id
            // waits for that exit.
            let pin =
                tokio::task::spawn_blocking(move || berth_snapshot::mount::detach_all(&rootfs))
                    .await??;
            (pin, Some(PendingRuntimeDelete { runtime, id }))
        } else {
            // Created but never started: the runtime's delete kills the init, whose exit
            // is the one to report, so it must run first.
            let pin = tokio::task::spawn_blocking(move || -> Result<_, ShimError> {
                match runtime.delete(&id, false) {
                    Ok(()) | Err(berth_runtime::Error::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
                Ok(berth_snapshot::mount::detach_all(&rootfs)?)
            })
            .await??;
            (pin, None)
        };
        // A created init is killed by the runtime's delete; give the reaper a moment.
        let exit = tokio::time::timeout(DELETE_EXIT_WAIT, wait_for_exit(exit_watch))
            .await
            .ok()
            .flatten()
            .unwrap_or(ExitInfo {
                pid,
                exit_status: UNKNOWN_EXIT_STATUS,
                exited_at: SystemTime::now(),
            });

        let mut state = self.lock();
        state.deleted = true;
        state.detached_rootfs = rootfs_pin;
        state.runtime_cleanup = runtime_cleanup;
        if let Some(watch) = state.oom_watch.take() {
            watch.abort();
        }
        if let Some(init) = state.init.as_mut() {
            init.io = None;
            init.record_exit(exit);
        }
        state.execs.clear();
        if let Err(error) = exit_file::remove(&self.identity.bundle) {
            tracing::warn!(%error, "could not remove the exit file");
        }
        self.events.publish(
            topics::TASK_DELETE,
            &TaskDelete {
                container_id: self.id().to_string(),
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at: Some(timestamp(exit.exited_at)),
                id: String::new(),
            },
        );
        tracing::info!("task deleted");
        Ok(delete_response(&exit))
    }
}

/// True if the bundle's spec has `poststart` hooks, which runc (1.2 on) runs in its own
/// `start`; an unreadable spec counts as having them, so `runc start` is used.
fn has_poststart_hooks(bundle: &std::path::Path) -> bool {
    match berth_runtime::read_bundle_spec(bundle) {
        Ok(spec) => spec
            .hooks()
            .as_ref()
            .and_then(|hooks| hooks.poststart().as_ref())
            .is_some_and(|hooks| !hooks.is_empty()),
        Err(_) => true,
    }
}
