//! Staying with a process until it exits: its output copied here, this terminal's input,
//! size and signals passed on to it, and its exit status returned.
//!
//! Used by `run`, `tasks start` and `tasks exec` (for a process they just started) and by
//! `tasks attach` (for one that already runs).

use std::time::Duration;

use berth_client::Api;
use berth_proto::containerd::services::tasks::v1::{
    CloseIoRequest, KillRequest, ResizePtyRequest, WaitRequest, WaitResponse,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::signal::catch_forwarded_signals;
use crate::error::CliError;
use crate::stdio::{window_size, ProcessIo, RawMode};

/// How long output may keep arriving after the process exited (from something it left
/// behind holding its stdout) before berthctl stops copying.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A process of a task: the task's init (empty exec id) or one of its execs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRef {
    /// The container (task) id.
    pub container_id: String,
    /// The exec id, empty for the init process.
    pub exec_id: String,
}

impl ProcessRef {
    /// The init process of task `id`.
    pub fn init(id: &str) -> ProcessRef {
        ProcessRef {
            container_id: id.to_string(),
            exec_id: String::new(),
        }
    }

    /// How the process is named in messages: `task c1` or `exec e1 of task c1`.
    pub fn describe(&self) -> String {
        if self.exec_id.is_empty() {
            format!("task {}", self.container_id)
        } else {
            format!("exec {} of task {}", self.exec_id, self.container_id)
        }
    }
}

/// Sends Tasks.Wait for `process` right away (before it is started, so its exit cannot
/// be missed) and returns the pending answer.
pub fn wait_for_exit(
    api: &Api,
    process: &ProcessRef,
) -> JoinHandle<Result<WaitResponse, CliError>> {
    let mut tasks = api.tasks();
    let request = WaitRequest {
        container_id: process.container_id.clone(),
        exec_id: process.exec_id.clone(),
    };
    let what = format!("waiting for {}", process.describe());
    tokio::spawn(async move {
        tasks
            .wait(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(CliError::rpc(what))
    })
}

/// Follows a started process until it exits and returns its exit status: copies its
/// streams (`io`, if it has any berthctl handles), puts this terminal in raw mode and keeps the process's terminal the
/// same size if `terminal`, passes on the signals berthctl receives, and tells the daemon
/// when this stdin ends. The terminal is restored on every way out.
pub async fn follow(
    api: &Api,
    process: &ProcessRef,
    mut io: Option<ProcessIo>,
    terminal: bool,
    wait: JoinHandle<Result<WaitResponse, CliError>>,
) -> Result<u32, CliError> {
    let raw_mode = if terminal && io.is_some() {
        RawMode::enable_on_stdin().map_err(|e| CliError::Failed(e.to_string()))?
    } else {
        None
    };
    let mut helpers: Vec<JoinHandle<()>> = Vec::new();
    if terminal {
        helpers.push(tokio::spawn(keep_terminal_size(
            api.clone(),
            process.clone(),
        )));
    }
    helpers.push(tokio::spawn(pass_on_signals(api.clone(), process.clone())?));
    if let Some(closed) = io.as_mut().and_then(ProcessIo::take_stdin_closed) {
        let api = api.clone();
        let process = process.clone();
        helpers.push(tokio::spawn(async move {
            if closed.await.is_ok() {
                let _ = api
                    .tasks()
                    .close_io(CloseIoRequest {
                        container_id: process.container_id,
                        exec_id: process.exec_id,
                        stdin: true,
                    })
                    .await;
            }
        }));
    }

    let waited = match wait.await {
        Ok(result) => result,
        Err(join) => Err(CliError::Failed(format!(
            "waiting for {}: {join}",
            process.describe()
        ))),
    };
    if let Some(io) = io {
        io.finish(OUTPUT_GRACE).await;
    }
    for helper in helpers {
        helper.abort();
    }
    drop(raw_mode);
    Ok(waited?.exit_status)
}

/// Gives the process's terminal this terminal's size now and after every SIGWINCH.
async fn keep_terminal_size(api: Api, process: ProcessRef) {
    let mut changes = signal(SignalKind::window_change()).ok();
    loop {
        if let Some((width, height)) = window_size() {
            let _ = api
                .tasks()
                .resize_pty(ResizePtyRequest {
                    container_id: process.container_id.clone(),
                    exec_id: process.exec_id.clone(),
                    width: u32::from(width),
                    height: u32::from(height),
                })
                .await;
        }
        match changes.as_mut() {
            Some(stream) => {
                if stream.recv().await.is_none() {
                    return;
                }
            }
            None => return,
        }
    }
}

/// Catches the signals a foreground program would get and sends each to the process.
fn pass_on_signals(
    api: Api,
    process: ProcessRef,
) -> Result<impl std::future::Future<Output = ()>, CliError> {
    let mut caught = catch_forwarded_signals().map_err(CliError::io("catching signals"))?;
    Ok(async move {
        while let Some(number) = caught.recv().await {
            let _ = api
                .tasks()
                .kill(KillRequest {
                    container_id: process.container_id.clone(),
                    exec_id: process.exec_id.clone(),
                    signal: number,
                    all: false,
                })
                .await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_named_in_messages() {
        assert_eq!(ProcessRef::init("c1").describe(), "task c1");
        let exec = ProcessRef {
            container_id: "c1".into(),
            exec_id: "e1".into(),
        };
        assert_eq!(exec.describe(), "exec e1 of task c1");
    }
}
