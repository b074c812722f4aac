//! One process of the task (its init or an exec): its state, its exit, and its stdio.

use std::path::PathBuf;

use berth_proto::containerd::v1::types::Status;
use berth_runtime::oci_spec::runtime::Process as ProcessSpec;
use tokio::sync::watch;

use crate::client::ExitInfo;
use crate::server::stdio::{ProcessIo, StdioPaths};

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created (the init) or added (an exec), not started.
    Created,
    /// Running.
    Running,
    /// Frozen (only the init; it stands for the whole container).
    Paused,
    /// Exited; the exit is recorded.
    Stopped,
}

impl Phase {
    /// The task API's status.
    pub(crate) fn status(self) -> Status {
        match self {
            Phase::Created => Status::Created,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
            Phase::Stopped => Status::Stopped,
        }
    }
}

/// A process of the task.
#[derive(Debug)]
pub(crate) struct Process {
    /// Exec id, empty for the init.
    pub exec_id: String,
    /// Host pid; 0 for an exec not started yet.
    pub pid: u32,
    /// Life-cycle phase.
    pub phase: Phase,
    /// The client's stdio, as named in the request.
    pub stdio: StdioPaths,
    /// For an exec: the OCI process it runs.
    pub spec: Option<ProcessSpec>,
    /// Copies and terminal of the running process.
    pub io: Option<ProcessIo>,
    /// A start is in flight: an exit reaped meanwhile waits in `pending_exit`, so that
    /// the start event is published before the exit event.
    pub starting: bool,
    /// An exit reaped while starting.
    pub pending_exit: Option<ExitInfo>,
    /// The exit, once it happened; watchers (Wait) are told through here.
    exit: watch::Sender<Option<ExitInfo>>,
}

impl Process {
    /// A new process in phase [`Phase::Created`].
    pub(crate) fn new(exec_id: &str, pid: u32, stdio: StdioPaths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid,
            phase: Phase::Created,
            stdio,
            spec: None,
            io: None,
            starting: false,
            pending_exit: None,
            exit: watch::channel(None).0,
        }
    }

    /// True for the task's init process.
    pub(crate) fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }

    /// The recorded exit, if the process has exited.
    pub(crate) fn exit(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Records the exit (once) and wakes every waiter; returns false if one was already
    /// recorded.
    pub(crate) fn record_exit(&mut self, exit: ExitInfo) -> bool {
        if self.exit().is_some() {
            return false;
        }
        self.phase = Phase::Stopped;
        self.exit.send_replace(Some(exit));
        true
    }

    /// A receiver that sees the exit when it is recorded.
    pub(crate) fn watch_exit(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.subscribe()
    }

    /// Where an exec's process JSON is written for the runtime.
    pub(crate) fn process_json_path(bundle: &std::path::Path, exec_id: &str) -> PathBuf {
        bundle.join(format!("exec-{exec_id}.json"))
    }

    /// Where the runtime writes an exec's pid.
    pub(crate) fn pid_file_path(bundle: &std::path::Path, exec_id: &str) -> PathBuf {
        bundle.join(format!("exec-{exec_id}.pid"))
    }
}

/// Waits until `receiver` sees an exit; `None` if the process went away first.
pub(crate) async fn wait_for_exit(
    mut receiver: watch::Receiver<Option<ExitInfo>>,
) -> Option<ExitInfo> {
    let waited = receiver.wait_for(Option::is_some).await.map(|exit| *exit);
    match waited {
        Ok(exit) => exit,
        Err(_) => *receiver.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[tokio::test(flavor = "current_thread")]
    async fn waiters_see_the_first_exit_only() {
        let mut process = Process::new("", 42, StdioPaths::default());
        let waiter = tokio::spawn(wait_for_exit(process.watch_exit()));
        tokio::task::yield_now().await;
        let exit = ExitInfo {
            pid: 42,
            exit_status: 3,
            exited_at: SystemTime::now(),
        };
        assert!(process.record_exit(exit));
        assert!(!process.record_exit(ExitInfo {
            exit_status: 9,
            ..exit
        }));
        assert_eq!(waiter.await.unwrap(), Some(exit));
        assert_eq!(process.phase, Phase::Stopped);
        assert_eq!(process.exit(), Some(exit));
    }
}
