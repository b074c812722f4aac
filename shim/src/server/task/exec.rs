//! Exec processes: adding, starting and deleting them.

use std::time::SystemTime;

use berth_proto::containerd::events::{TaskExecAdded, TaskExecStarted};
use berth_proto::containerd::task::v2::{DeleteResponse, ExecProcessRequest};
use berth_runtime::oci_spec::runtime::Process as ProcessSpec;

use crate::client::ExitInfo;
use crate::server::events::topics;
use crate::server::jobs::{ExecJob, Spawned};
use crate::server::process::{Phase, Process};
use crate::server::stdio::{ProcessIo, StdioPaths};
use crate::server::ShimError;

use super::{delete_response, Task};

impl Task {
    // ----- exec processes ---------------------------------------------------------------

    /// Exec: registers an exec process; it runs at its Start.
    pub(crate) async fn exec(&self, request: ExecProcessRequest) -> Result<(), ShimError> {
        self.check_id(&request.id)?;
        validate_exec_id(&request.exec_id)?;
        let mut spec = parse_process_spec(request.spec.as_ref())?;
        spec.set_terminal(Some(request.terminal));
        let _operation = self.lifecycle.lock().await;
        let mut state = self.lock();
        if state.deleted {
            return Err(self.deleted_error());
        }
        let init = state.init.as_ref().ok_or_else(|| self.not_created())?;
        if init.phase == Phase::Stopped {
            return Err(ShimError::FailedPrecondition(format!(
                "task {} has exited; cannot exec in it",
                self.id()
            )));
        }
        if state.execs.contains_key(&request.exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec process {} already exists in task {}",
                request.exec_id,
                self.id()
            )));
        }
        let stdio = StdioPaths {
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
            terminal: request.terminal,
        };
        let mut process = Process::new(&request.exec_id, 0, stdio);
        process.spec = Some(spec);
        state.execs.insert(request.exec_id.clone(), process);
        self.events.publish(
            topics::TASK_EXEC_ADDED,
            &TaskExecAdded {
                container_id: self.id().to_string(),
                exec_id: request.exec_id,
            },
        );
        Ok(())
    }

    /// Start of an exec: opens its stdio and runs `runc exec --detach`; a failed start
    /// leaves the exec stopped (status 255) so it can be waited for and deleted.
    pub(super) async fn start_exec(&self, exec_id: &str) -> Result<u32, ShimError> {
        let runtime = self.runtime()?;
        let (spec, stdio) = {
            let mut state = self.lock();
            let init_phase = state.init.as_ref().map(|init| init.phase);
            if init_phase != Some(Phase::Running) {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is not running; cannot start exec process {exec_id}",
                    self.id()
                )));
            }
            let exec = self.exec_mut(&mut state, exec_id)?;
            if exec.phase != Phase::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec process {exec_id} is already started"
                )));
            }
            exec.starting = true;
            (exec.spec.clone().unwrap_or_default(), exec.stdio.clone())
        };
        let job = ExecJob {
            task: self.identity.clone(),
            runtime,
            exec_id: exec_id.to_string(),
            spec,
            console_socket: stdio.terminal.then(|| self.next_console_path()),
            stdio,
        };
        let began = SystemTime::now();
        let result = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(Ok(Spawned {
                pid,
                console,
                shim_side,
            })) => ProcessIo::start(shim_side, console).map(|io| (pid, io)),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(error.into()),
        };

        let mut state = self.lock();
        let early_exit = match &result {
            Ok((pid, _)) => state.take_unclaimed(*pid, began),
            Err(_) => None,
        };
        let exec = self.exec_mut(&mut state, exec_id)?;
        exec.starting = false;
        match result {
            Ok((pid, io)) => {
                exec.pid = pid;
                exec.phase = Phase::Running;
                exec.io = Some(io);
                self.events.publish(
                    topics::TASK_EXEC_STARTED,
                    &TaskExecStarted {
                        container_id: self.id().to_string(),
                        exec_id: exec_id.to_string(),
                        pid,
                    },
                );
                if let Some(exit) = early_exit {
                    self.finish_exit(exec, exit);
                }
                Ok(pid)
            }
            Err(error) => {
                // It never ran: waiters learn that it is over, and it can be deleted.
                exec.record_exit(ExitInfo::unknown(SystemTime::now()));
                Err(error)
            }
        }
    }

    /// Delete of an exec that has exited (or never started): forgets it.
    pub(super) fn delete_exec(&self, exec_id: &str) -> Result<DeleteResponse, ShimError> {
        let mut state = self.lock();
        if state.deleted {
            return Err(self.deleted_error());
        }
        let exec = self.exec_mut(&mut state, exec_id)?;
        let exit = match (exec.phase, exec.exit()) {
            (_, Some(exit)) => exit,
            (Phase::Created, None) if !exec.starting => ExitInfo {
                pid: 0,
                exit_status: 0,
                exited_at: SystemTime::now(),
            },
            _ => {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec process {exec_id} is still running; kill it before deleting it"
                )))
            }
        };
        state.execs.remove(exec_id);
        // As containerd: /tasks/delete is published for the task (its init) only.
        Ok(delete_response(&exit))
    }
}

/// Longest exec id accepted (containerd's identifier limit); it becomes part of file
/// names in the bundle.
const MAX_EXEC_ID_LEN: usize = 76;

/// An exec id becomes part of file names in the bundle: the container id grammar, and
/// short enough for a file name with a prefix and suffix.
fn validate_exec_id(exec_id: &str) -> Result<(), ShimError> {
    if exec_id.len() > MAX_EXEC_ID_LEN || berth_runtime::validate_container_id(exec_id).is_err() {
        return Err(ShimError::InvalidArgument(format!(
            "exec id {exec_id:?} must be 1-{MAX_EXEC_ID_LEN} letters, digits, '_', '-', '.' \
             or '+', not starting with '-' or '.'"
        )));
    }
    Ok(())
}

/// The OCI process of an exec, from `ExecProcessRequest.spec` (JSON in an `Any`).
fn parse_process_spec(spec: Option<&prost_types::Any>) -> Result<ProcessSpec, ShimError> {
    let spec =
        spec.ok_or_else(|| ShimError::InvalidArgument("an exec needs a process spec".into()))?;
    let process: ProcessSpec = serde_json::from_slice(&spec.value).map_err(|e| {
        ShimError::InvalidArgument(format!("the exec's process spec is not valid JSON: {e}"))
    })?;
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        return Err(ShimError::InvalidArgument(
            "the exec's process spec has no args".into(),
        ));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_specs_need_args_and_exec_ids_stay_file_names() {
        let any = |json: &str| prost_types::Any {
            type_url: berth_proto::type_urls::OCI_PROCESS.into(),
            value: json.as_bytes().to_vec(),
        };
        let spec = parse_process_spec(Some(&any(
            r#"{"args":["ls","/"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        )))
        .unwrap();
        assert_eq!(spec.args().as_ref().unwrap()[0], "ls");
        assert!(parse_process_spec(Some(&any(r#"{"cwd":"/"}"#))).is_err());
        assert!(parse_process_spec(Some(&any("nope"))).is_err());
        assert!(parse_process_spec(None).is_err());
        validate_exec_id("e1").unwrap();
        for bad in ["", "../x", "a/b", "-e", &"e".repeat(77)] {
            assert!(validate_exec_id(bad).is_err(), "{bad:?}");
        }
    }
}
