//! Processes berthd watches but did not start as children: shims, found by the pid they
//! record in their bundle.

use std::time::Duration;

use berth_proto::containerd::task::v2::ShutdownRequest;
use berth_shim::client::TaskClient;

/// How long a shim has to acknowledge Shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shut-down shim has to exit before it is killed.
const SHIM_EXIT_WAIT: Duration = Duration::from_secs(2);

/// First pause of a polling wait for a process to exit (where no pidfd can be had); it
/// doubles up to [`MAX_POLL`]. A shim told to shut down is usually gone within a few ms.
const FIRST_POLL: Duration = Duration::from_millis(1);
/// Longest pause between two looks.
const MAX_POLL: Duration = Duration::from_millis(20);

/// True if process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(_) => return false,
    }
    // A zombie still answers kill(pid, 0); its state letter in /proc says it is dead.
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Waits up to `limit` for process `pid` to exit; true if it did. Wakes the moment the
/// process exits (through a pidfd, which becomes readable then), so a task delete does not
/// sit out the rest of a polling pause after its shim is gone; falls back to polling where
/// a pidfd cannot be had.
pub async fn wait_for_exit(pid: i32, limit: Duration) -> bool {
    if let Some(exited) = open_exit_watch(pid) {
        return match tokio::time::timeout(limit, exited.readable()).await {
            Ok(Ok(_)) => true,
            Ok(Err(_)) => poll_for_exit(pid, limit).await,
            Err(_) => !process_alive(pid),
        };
    }
    poll_for_exit(pid, limit).await
}

/// A pidfd of `pid` registered with the runtime: it turns readable when the process exits
/// (a zombie counts). `None` if there is no such process or no pidfd for it.
fn open_exit_watch(pid: i32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    let target = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::NONBLOCK).ok()?;
    // SAFETY: `fd` is an open pidfd owned by the `AsyncFd` from here on; an `OwnedFd` always
    // returns that same descriptor and closes it only when dropped with the `AsyncFd`.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .ok()
}

/// Waits up to `limit` for process `pid` to exit by looking at it now and then.
async fn poll_for_exit(pid: i32, limit: Duration) -> bool {
    let mut waited = Duration::ZERO;
    let mut pause = FIRST_POLL;
    while process_alive(pid) {
        if waited >= limit {
            return false;
        }
        tokio::time::sleep(pause).await;
        waited += pause;
        pause = (pause * 2).min(MAX_POLL);
    }
    true
}

/// Waits up to `grace` for process `pid` to exit, then kills it (SIGKILL) and waits for
/// it to go.
pub async fn stop_process(pid: i32, grace: Duration) {
    if wait_for_exit(pid, grace).await {
        return;
    }
    tracing::warn!(pid, "the process did not exit in time; killing it");
    if let Some(target) = rustix::process::Pid::from_raw(pid.max(0)) {
        let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
    }
    wait_for_exit(pid, Duration::from_secs(1)).await;
}

/// Tells the shim of task `id` to shut down (`now`: even with its task still there), then
/// waits for process `shim_pid`, if known, to exit, killing it if it lingers. A shim may
/// exit before it answers; that is what was asked, so only a missing answer is logged.
pub async fn shut_down_shim(client: &mut TaskClient, id: &str, now: bool, shim_pid: Option<i32>) {
    let request = ShutdownRequest {
        id: id.to_string(),
        now,
    };
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, client.shutdown(request)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => tracing::debug!(%id, %status, "shim shutdown answered with an error"),
        Err(_) => tracing::warn!(%id, "shim did not acknowledge shutdown in time"),
    }
    if let Some(pid) = shim_pid {
        stop_process(pid, SHIM_EXIT_WAIT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_alive_tells_running_from_reaped_processes() {
        assert!(process_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!process_alive(0));
        assert!(!process_alive(-1));
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_process_exits_not_at_the_limit() {
        let mut sleeper = std::process::Command::new("/bin/sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        assert!(wait_for_exit(sleeper.id() as i32, Duration::from_secs(30)).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150),
            "returned before the exit: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(10),
            "did not notice the exit: {waited:?}"
        );
        sleeper.wait().unwrap();
    }

    #[tokio::test]
    async fn a_zombie_counts_as_exited_and_a_stubborn_process_is_killed() {
        // Not reaped yet: a zombie, which must not count as alive.
        let mut quick = std::process::Command::new("/bin/true").spawn().unwrap();
        assert!(wait_for_exit(quick.id() as i32, Duration::from_secs(5)).await);
        quick.wait().unwrap();

        let mut sleeper = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id() as i32;
        assert!(!wait_for_exit(pid, Duration::from_millis(50)).await);
        stop_process(pid, Duration::from_millis(50)).await;
        assert!(!process_alive(pid));
        // Reap it (it died by SIGKILL).
        let status = sleeper.wait().unwrap();
        assert!(!status.success());
    }
}
