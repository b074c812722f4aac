//! Processes berthd watches but did not start as children: shims, found by the pid they
//! record in their bundle.

use std::time::Duration;

/// First pause of a wait for a process to exit; it doubles up to [`MAX_POLL`]. A shim told
/// to shut down is usually gone within a millisecond or two.
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

/// Waits up to `limit` for process `pid` to exit; true if it did.
pub async fn wait_for_exit(pid: i32, limit: Duration) -> bool {
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
