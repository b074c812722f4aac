//! Host-side facts about processes, read from `/proc`: what the tests compare ctr's
//! answers with, and how they find (and, on cleanup, kill) only the processes they made.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A process remembered by pid and start time, so that a later kill can never hit an
/// unrelated process that happens to reuse the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessHandle {
    /// The process id in the host's pid namespace.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl ProcessHandle {
    /// Remembers the running process `pid`; `None` if there is no such process.
    pub fn capture(pid: u32) -> Option<Self> {
        Some(ProcessHandle {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this very process still exists (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }

    /// Sends SIGKILL if this very process still exists.
    pub fn kill(&self) {
        if !self.is_alive() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    /// Waits up to `timeout` for the process to be gone; returns whether it is.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_alive() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses, so it is skipped up to its last `)`): element 0 is field 3, the state.
fn stat_fields_after_comm(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Start time of `pid` in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    // Field 22 of stat; element 0 after the command name is field 3.
    stat_fields_after_comm(pid)?.get(22 - 3)?.parse().ok()
}

/// Whether `pid` is a zombie (exited, not yet reaped).
fn is_zombie(pid: u32) -> bool {
    stat_fields_after_comm(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state == "Z")
}

/// The value of `field` (e.g. `CapInh`, `PPid`, `NSpid`) in `/proc/<pid>/status`.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// The parent of `pid`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    status_field(pid, "PPid")?.parse().ok()
}

/// The command line of `pid`, one element per argument.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The numbers of the file descriptors `pid` holds open.
pub fn open_fds(pid: u32) -> Option<BTreeSet<u32>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// The inodes of the sockets `pid` holds (`socket:[<inode>]` fd links).
pub fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The names of the abstract unix sockets (`@…` in `/proc/net/unix`) among `inodes`.
pub fn abstract_socket_names(inodes: &BTreeSet<u64>) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode [Path]
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(6)?.parse().ok()?;
            let path = fields.get(7)?;
            (inodes.contains(&inode) && path.starts_with('@')).then(|| path.to_string())
        })
        .collect()
}

/// Every process with an argument ending in `socket`'s path, apart from
/// `ctr` clients and the process `except` (the daemon itself): the shims a daemon
/// started, since each is told the daemon's address. The socket path is unique to one
/// test's daemon, so these are never another test's processes.
pub fn processes_naming_socket(socket: &Path, except: Option<u32>) -> Vec<u32> {
    let wanted = socket.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != except && !is_zombie(*pid))
        .filter(|pid| {
            let Some(args) = cmdline(*pid) else {
                return false;
            };
            let is_ctr = args
                .first()
                .and_then(|a| Path::new(a).file_name())
                .is_some_and(|name| name == "ctr");
            // `--flag=<socket>` and `unix://<socket>` name it as well.
            !is_ctr && args.iter().any(|a| a.ends_with(wanted.as_ref()))
        })
        .collect();
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_as_alive_with_its_parent() {
        let me = std::process::id();
        let handle = ProcessHandle::capture(me).unwrap();
        assert!(handle.is_alive());
        assert_eq!(parent_pid(me), Some(std::os::unix::process::parent_id()));
        assert!(open_fds(me).unwrap().contains(&0));
    }

    #[test]
    fn a_reaped_child_is_gone_and_killing_it_again_is_harmless() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let handle = ProcessHandle::capture(child.id()).unwrap();
        assert!(handle.is_alive());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Right after fork the child may not have exec'd sleep yet.
        while cmdline(child.id()).unwrap() != ["/bin/sleep", "30"] {
            assert!(Instant::now() < deadline, "{:?}", cmdline(child.id()));
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.kill();
        child.wait().unwrap();
        assert!(handle.wait_gone(Duration::from_secs(5)));
        handle.kill();
    }

    #[test]
    fn a_pid_with_another_start_time_is_not_the_remembered_process() {
        let me = ProcessHandle::capture(std::process::id()).unwrap();
        let impostor = ProcessHandle {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn processes_are_found_by_the_socket_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        std::fs::write(&socket, "").unwrap();
        let mut child = std::process::Command::new("/usr/bin/tail")
            .arg("-f")
            .arg(&socket)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = Vec::new();
        // Right after fork the child may not have exec'd tail yet.
        while found.is_empty() && Instant::now() < deadline {
            found = processes_naming_socket(&socket, None);
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(processes_naming_socket(&socket, None).is_empty());
    }
}
