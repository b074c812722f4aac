//! Spare shims: berthd keeps `spare_shims` shims (default 1) started and connected before
//! any task needs them. A task create takes one and assigns it the task, which skips
//! launching a shim and the connection handshake (about 4 ms of every start); a
//! replacement is launched in the background shortly after. Without a ready spare, or when
//! assigning one fails, the create launches a shim as before.
//!
//! A spare's socket is `<state>/s/spare-<berthd pid>-<n>.sock` until it is assigned (then
//! it is renamed to the task's socket). A spare exits by itself when berthd exits before
//! assigning it; the sockets of spares that were killed are removed at the next start.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_shim::client::{launch_spare, Assignment, SpareArgs, SpareShim, TaskClient};

use super::{lock, TaskManager};

/// Prefix of a spare's socket file name.
const SPARE_SOCKET_PREFIX: &str = "spare-";

/// How long after a create took a spare its replacement is launched: long enough for the
/// runtime to have created the container (and usually for the client to have started it).
const REFILL_DELAY: Duration = Duration::from_millis(100);

/// After a spare fails to launch, how long before another is tried.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The spares that are ready, and those being launched.
#[derive(Debug, Default)]
pub(crate) struct SparePool {
    state: Mutex<PoolState>,
    /// Numbers the spares' sockets.
    launched: AtomicU64,
}

#[derive(Debug, Default)]
struct PoolState {
    ready: Vec<SpareShim>,
    launching: usize,
    last_failure: Option<Instant>,
}

impl TaskManager {
    /// Takes a ready spare shim, if there is one.
    pub(crate) fn take_spare(&self) -> Option<SpareShim> {
        lock(&self.inner.spares.state).ready.pop()
    }

    /// Launches spares in the background until the configured number are ready or on
    /// their way (none for a while after a launch failed).
    pub fn refill_spares(&self) {
        let wanted = self.inner.settings.spare_shims;
        let mut state = lock(&self.inner.spares.state);
        if state
            .last_failure
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE)
        {
            return;
        }
        while state.ready.len() + state.launching < wanted {
            state.launching += 1;
            let manager = self.clone();
            tokio::spawn(async move { manager.launch_one_spare().await });
        }
    }

    /// [`TaskManager::refill_spares`] after [`REFILL_DELAY`].
    pub(crate) fn refill_spares_soon(&self) {
        if self.inner.settings.spare_shims == 0 {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REFILL_DELAY).await;
            manager.refill_spares();
        });
    }

    async fn launch_one_spare(&self) {
        let settings = &self.inner.settings;
        let number = self.inner.spares.launched.fetch_add(1, Ordering::Relaxed);
        let socket = self.inner.layout.socket_dir().join(format!(
            "{SPARE_SOCKET_PREFIX}{}-{number}.sock",
            std::process::id()
        ));
        let launched = match self.inner.layout.ensure_socket_dir() {
            Ok(()) => launch_spare(&SpareArgs {
                shim_binary: settings.shim_binary.clone(),
                socket,
                publish_address: settings.publish_address.clone(),
                supervisor_pid: std::process::id(),
                log_level: settings.log_level.clone(),
            })
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(format!("making the shim socket directory: {e}")),
        };
        let mut state = lock(&self.inner.spares.state);
        state.launching -= 1;
        match launched {
            Ok(spare) => {
                tracing::debug!(pid = spare.pid(), socket = %spare.socket().display(), "spare shim ready");
                state.ready.push(spare);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?RETRY_AFTER_FAILURE,
                    "could not start a spare shim; tasks get a shim launched for them");
                state.last_failure = Some(Instant::now());
            }
        }
    }

    /// Gives `spare` the task `task`; `None` (with the spare stopped) if it did not take it.
    pub(crate) async fn assign_spare(
        &self,
        spare: SpareShim,
        task: &Assignment,
    ) -> Option<TaskClient> {
        let pid = spare.pid();
        let spare_socket = spare.socket().to_path_buf();
        match spare.assign(task).await {
            Ok(client) => {
                tracing::debug!(id = %task.id, pid, "spare shim took the task");
                Some(client)
            }
            Err(error) => {
                tracing::warn!(id = %task.id, pid, %error,
                    "the spare shim did not take the task; launching a shim for it");
                // A spare berthd started and nothing else knows: stop it for good.
                if let Some(target) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
                }
                let _ = std::fs::remove_file(&spare_socket);
                None
            }
        }
    }
}

/// Removes the sockets spares of earlier berthd runs left when they were killed (a spare
/// that exits normally removes its own). Spares of this berthd are not touched.
pub(crate) fn remove_stale_spare_sockets(socket_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(socket_dir) else {
        return;
    };
    let ours = format!("{SPARE_SOCKET_PREFIX}{}-", std::process::id());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SPARE_SOCKET_PREFIX) && !name.starts_with(&ours) {
            // A socket that still answers belongs to a spare on its way out; its own
            // removal then finds nothing, which is fine.
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::debug!(socket = %entry.path().display(), error = %e, "stale spare socket not removed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_runs_spare_sockets_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir
            .path()
            .join(format!("spare-{}-0.sock", std::process::id()));
        let old = dir.path().join("spare-1-3.sock");
        let task = dir.path().join("0123456789abcdef0123.sock");
        for file in [&ours, &old, &task] {
            std::fs::write(file, b"").unwrap();
        }
        remove_stale_spare_sockets(dir.path());
        assert!(ours.exists());
        assert!(!old.exists());
        assert!(task.exists());
    }
}
