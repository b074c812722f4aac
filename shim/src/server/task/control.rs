//! Signals, freezing, resources, statistics and the stdio controls of a running task.

use berth_proto::containerd::events::{TaskPaused, TaskResumed};
use berth_proto::containerd::runc::v1::ProcessDetails;
use berth_proto::containerd::task::v2::{KillRequest, PidsResponse, UpdateTaskRequest};
use berth_proto::containerd::v1::types::ProcessInfo;

use crate::server::events::topics;
use crate::server::process::Phase;
use crate::server::ShimError;

use super::{Task, MAX_SIGNAL};

impl Task {
    // ----- signals, freezing, resources -------------------------------------------------

    /// Kill: a signal to the init (through the runtime, optionally to all processes) or to
    /// an exec process.
    pub(crate) async fn kill(&self, request: KillRequest) -> Result<(), ShimError> {
        self.check_id(&request.id)?;
        if !(1..=MAX_SIGNAL).contains(&request.signal) {
            return Err(ShimError::InvalidArgument(format!(
                "signal {} is not between 1 and {MAX_SIGNAL}",
                request.signal
            )));
        }
        let finished = || {
            ShimError::NotFound(format!(
                "process {:?} of task {} has already finished",
                request.exec_id,
                self.id()
            ))
        };
        let exec_pid = {
            let mut state = self.lock();
            let process = self.process_mut(&mut state, &request.exec_id)?;
            if process.exit().is_some() {
                return Err(finished());
            }
            if process.is_init() {
                None
            } else if process.pid == 0 {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec process {} is not started",
                    request.exec_id
                )));
            } else {
                Some(process.pid)
            }
        };
        if let Some(pid) = exec_pid {
            // The pid cannot have been reused: the shim reaps it, and it is not reaped yet.
            // SAFETY: kill(2) takes two integers and touches no memory.
            let sent = unsafe { libc::kill(pid as libc::pid_t, request.signal as libc::c_int) };
            if sent == 0 {
                return Ok(());
            }
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ESRCH) {
                return Err(finished());
            }
            return Err(ShimError::io("signal exec process", "")(error));
        }
        let runtime = self.runtime()?;
        let id = self.id().to_string();
        let (signal, all) = (request.signal as i32, request.all);
        match tokio::task::spawn_blocking(move || runtime.kill(&id, signal, all)).await? {
            Ok(()) => Ok(()),
            Err(berth_runtime::Error::NotRunning { .. }) => Err(finished()),
            Err(error) => Err(error.into()),
        }
    }

    /// Pause (`runc pause`) or resume (`runc resume`) the whole container.
    pub(crate) async fn set_paused(&self, id: &str, pause: bool) -> Result<(), ShimError> {
        self.check_id(id)?;
        let _operation = self.lifecycle.lock().await;
        let runtime = self.runtime()?;
        let (from, to) = if pause {
            (Phase::Running, Phase::Paused)
        } else {
            (Phase::Paused, Phase::Running)
        };
        {
            let mut state = self.lock();
            let init = self.process_mut(&mut state, "")?;
            if init.phase != from {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {:?}, not {:?}",
                    self.id(),
                    init.phase,
                    from
                )));
            }
        }
        let id = self.id().to_string();
        tokio::task::spawn_blocking(move || {
            if pause {
                runtime.pause(&id)
            } else {
                runtime.resume(&id)
            }
        })
        .await??;
        let mut state = self.lock();
        if let Ok(init) = self.process_mut(&mut state, "") {
            if init.phase == from {
                init.phase = to;
            }
        }
        let container_id = self.id().to_string();
        if pause {
            self.events
                .publish(topics::TASK_PAUSED, &TaskPaused { container_id });
        } else {
            self.events
                .publish(topics::TASK_RESUMED, &TaskResumed { container_id });
        }
        Ok(())
    }

    /// Pids: every process of the container, exec processes marked with their exec id.
    pub(crate) async fn pids(&self, id: &str) -> Result<PidsResponse, ShimError> {
        self.check_id(id)?;
        let runtime = self.runtime()?;
        let container = self.id().to_string();
        let pids = tokio::task::spawn_blocking(move || runtime.ps(&container)).await??;
        let state = self.lock();
        let processes = pids
            .into_iter()
            .map(|pid| {
                let pid = pid as u32;
                let exec = state.execs.values().find(|exec| exec.pid == pid);
                ProcessInfo {
                    pid,
                    info: exec.map(|exec| {
                        berth_proto::any::pack(&ProcessDetails {
                            exec_id: exec.exec_id.clone(),
                        })
                    }),
                }
            })
            .collect();
        Ok(PidsResponse { processes })
    }

    /// Update: applies new OCI Linux resources (`runc update --resources`).
    pub(crate) async fn update(&self, request: UpdateTaskRequest) -> Result<(), ShimError> {
        self.check_id(&request.id)?;
        let _operation = self.lifecycle.lock().await;
        let runtime = self.runtime()?;
        let Some(resources) = request.resources else {
            return Ok(());
        };
        let json: serde_json::Value = serde_json::from_slice(&resources.value).map_err(|e| {
            ShimError::InvalidArgument(format!("resources are not OCI Linux resources JSON: {e}"))
        })?;
        if !json.is_object() {
            return Err(ShimError::InvalidArgument(
                "resources must be a JSON object".into(),
            ));
        }
        let id = self.id().to_string();
        let path = self.identity.bundle.join(".update-resources.json");
        tokio::task::spawn_blocking(move || -> Result<(), ShimError> {
            berth_runtime::write_json_atomically(&path, &json)?;
            let result = runtime.update(&id, &path);
            let _ = std::fs::remove_file(&path);
            Ok(result?)
        })
        .await?
    }

    /// Stats: the container's cgroup statistics as `io.containerd.cgroups.v1.Metrics`.
    pub(crate) async fn stats(&self, id: &str) -> Result<prost_types::Any, ShimError> {
        self.check_id(id)?;
        let runtime = self.runtime()?;
        let container = self.id().to_string();
        let stats = tokio::task::spawn_blocking(move || runtime.stats(&container)).await??;
        Ok(berth_proto::any::pack(&crate::server::metrics::metrics_of(
            &stats,
        )))
    }

    // ----- stdio ------------------------------------------------------------------------

    /// ResizePty: sets the size of the process's terminal.
    pub(crate) fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        self.check_id(id)?;
        let mut state = self.lock();
        let process = self.process_mut(&mut state, exec_id)?;
        match &process.io {
            Some(io) => io.resize(width, height),
            None => Err(ShimError::FailedPrecondition(format!(
                "process {exec_id:?} has no terminal"
            ))),
        }
    }

    /// CloseIO: ends the process's stdin once what the client wrote is passed on.
    pub(crate) fn close_io(&self, id: &str, exec_id: &str, stdin: bool) -> Result<(), ShimError> {
        self.check_id(id)?;
        let mut state = self.lock();
        let process = self.process_mut(&mut state, exec_id)?;
        if stdin {
            if let Some(io) = &process.io {
                io.close_stdin();
            }
        }
        Ok(())
    }
}
