//! Reaping: the shim is a child subreaper, so the container's init and exec processes
//! (orphaned when `runc` exits) become its children, and it collects every exit itself.
//!
//! The runtime's own processes (`runc create`, `runc start`, …) are children too. Their
//! statuses must reach the blocking thread that waits for them, not the task logic, so
//! [`Reaper`] is the [`ProcessMonitor`] given to `berth-runtime`: spawning registers the
//! pid under the same lock the reaper takes before it hands a status out, so no exit is
//! lost or misrouted, even one that happens before `spawn` returns.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Condvar, Mutex, MutexGuard};

use berth_runtime::ProcessMonitor;

/// Collects exits of all children; routes the runtime's to their waiters.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    /// Runtime processes being waited for: pid → raw wait status once reaped.
    monitored: Mutex<HashMap<i32, Option<i32>>>,
    /// Signalled whenever a monitored process is reaped.
    reaped: Condvar,
}

impl Reaper {
    /// Makes this process a child subreaper: orphaned descendants are reparented to it.
    pub(crate) fn become_subreaper() -> io::Result<()> {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
        let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Option<i32>>> {
        // A panic elsewhere does not corrupt a map of integers: keep going.
        self.monitored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reaps every child that has exited, without blocking. Statuses of monitored runtime
    /// processes go to their waiters; every other exit is passed to `on_exit(pid, status)`.
    pub(crate) fn reap_exited(&self, mut on_exit: impl FnMut(i32, i32)) {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid place for waitpid to store the status.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // ECHILD: no children left.
                return;
            }
            let mut monitored = self.lock();
            if let Some(slot) = monitored.get_mut(&pid) {
                *slot = Some(status);
                drop(monitored);
                self.reaped.notify_all();
            } else {
                drop(monitored);
                on_exit(pid, status);
            }
        }
    }
}

impl ProcessMonitor for Reaper {
    fn start(&self, command: &mut Command) -> io::Result<Child> {
        // Holding the lock across spawn: if the child exits at once, the reaper blocks on
        // the lock until the pid is registered, then routes the status here.
        let mut monitored = self.lock();
        let child = command.spawn()?;
        monitored.insert(child.id() as i32, None);
        Ok(child)
    }

    fn wait(&self, child: Child) -> io::Result<ExitStatus> {
        let pid = child.id() as i32;
        let mut monitored = self.lock();
        loop {
            match monitored.get(&pid) {
                Some(Some(status)) => {
                    let status = *status;
                    monitored.remove(&pid);
                    return Ok(ExitStatus::from_raw(status));
                }
                Some(None) => {
                    monitored = self
                        .reaped
                        .wait(monitored)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                None => {
                    return Err(io::Error::other(format!(
                        "process {pid} was not started through the reaper"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Reaps in a loop until `stop` is set, collecting unmonitored exits.
    fn reap_until(
        reaper: Arc<Reaper>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<Vec<(i32, i32)>> {
        std::thread::spawn(move || {
            let mut others = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                reaper.reap_exited(|pid, status| others.push((pid, status)));
                std::thread::sleep(Duration::from_millis(1));
            }
            others
        })
    }

    /// Runs the test named `name` alone in a fresh copy of this test binary: a reaper reaps
    /// every child of its process, which would steal the children of tests running in
    /// parallel threads here. Returns true when the caller is that copy.
    fn in_own_process(name: &str) -> bool {
        const MARKER: &str = "BERTH_SHIM_REAPER_TEST";
        if std::env::var_os(MARKER).is_some() {
            return true;
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(MARKER, "1")
            .status()
            .unwrap();
        assert!(status.success(), "{name} failed in its own process");
        false
    }

    #[test]
    fn monitored_statuses_reach_their_waiter_and_others_are_reported() {
        if !in_own_process(
            "server::reaper::tests::monitored_statuses_reach_their_waiter_and_others_are_reported",
        ) {
            return;
        }
        let reaper = Arc::new(Reaper::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = reap_until(reaper.clone(), stop.clone());

        // A monitored child that exits at once: its status must not be lost to the reaper.
        for _ in 0..20 {
            let child = reaper
                .start(Command::new("/bin/sh").args(["-c", "exit 7"]))
                .unwrap();
            assert_eq!(reaper.wait(child).unwrap().code(), Some(7));
        }
        // An unmonitored child goes to the callback with its raw status (the reaper, not
        // `wait`, collects it).
        #[allow(clippy::zombie_processes)]
        let stranger = Command::new("/bin/sh")
            .args(["-c", "exit 5"])
            .spawn()
            .unwrap();
        let stranger_pid = stranger.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let others = collector.join().unwrap();
        let status = others
            .iter()
            .find(|(pid, _)| *pid == stranger_pid)
            .map(|(_, status)| *status)
            .expect("the unmonitored exit was reported");
        assert_eq!(crate::server::exit_file::exit_status_of(status), 5);
        assert!(reaper.lock().is_empty());
    }
}
