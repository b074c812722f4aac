//! Who is unpacking a layer right now, and whether they still live.
//!
//! An unpacker labels the extraction snapshot it prepares with its owner: the process
//! id, that process's start time (so a recycled pid is not mistaken for the owner), and
//! a token naming one unpack inside the process. The daemon's socket is local, so any
//! other unpacker can look the owner up in `/proc`; within one process, the token says
//! whether that unpack is still running or was abandoned.

use std::collections::HashSet;
use std::sync::Mutex;

/// Tokens of the unpacks running in this process.
static LIVE_TOKENS: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

/// The owner of an extraction snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOwner {
    /// The owner's process id.
    pub pid: u32,
    /// The process's start time, in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// One unpack within that process.
    pub token: u64,
}

impl UnpackOwner {
    /// The label value: `<pid>:<start time>:<token in hex>`.
    pub fn to_label(&self) -> String {
        format!("{}:{}:{:x}", self.pid, self.start_time, self.token)
    }

    /// Parses a label value written by [`UnpackOwner::to_label`].
    pub fn parse(label: &str) -> Option<UnpackOwner> {
        let mut parts = label.split(':');
        let owner = UnpackOwner {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
            token: u64::from_str_radix(parts.next()?, 16).ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    /// Whether the owner still runs: its process exists with the same start time and,
    /// when that process is this one, the unpack is still registered.
    pub fn is_alive(&self) -> bool {
        if self.pid == std::process::id() && Some(self.start_time) == start_time_of(self.pid) {
            return lock_tokens()
                .as_ref()
                .is_some_and(|t| t.contains(&self.token));
        }
        start_time_of(self.pid) == Some(self.start_time)
    }
}

/// An unpack of this process, registered while it runs.
#[derive(Debug)]
pub struct OwnerGuard {
    owner: UnpackOwner,
}

impl OwnerGuard {
    /// Registers a new unpack of this process and returns its identity.
    pub fn register() -> std::io::Result<OwnerGuard> {
        let pid = std::process::id();
        let start_time = start_time_of(pid).ok_or_else(|| {
            std::io::Error::other("cannot read this process's start time from /proc/self/stat")
        })?;
        let mut tokens = lock_tokens();
        let live = tokens.get_or_insert_with(HashSet::new);
        let token = loop {
            let candidate: u64 = rand::random();
            if live.insert(candidate) {
                break candidate;
            }
        };
        Ok(OwnerGuard {
            owner: UnpackOwner {
                pid,
                start_time,
                token,
            },
        })
    }

    /// The identity written into the labels.
    pub fn owner(&self) -> UnpackOwner {
        self.owner
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        if let Some(tokens) = lock_tokens().as_mut() {
            tokens.remove(&self.owner.token);
        }
    }
}

fn lock_tokens() -> std::sync::MutexGuard<'static, Option<HashSet<u64>>> {
    LIVE_TOKENS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The start time of process `pid` (clock ticks after boot), or `None` if it is gone.
pub fn start_time_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself, so fields are counted after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name; field 22 is 19 further on.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_junk_is_refused() {
        let owner = UnpackOwner {
            pid: 42,
            start_time: 123_456,
            token: 0xdead_beef,
        };
        assert_eq!(owner.to_label(), "42:123456:deadbeef");
        assert_eq!(UnpackOwner::parse(&owner.to_label()), Some(owner));
        for junk in ["", "42", "42:1", "x:1:2", "42:1:zz", "1:2:3:4"] {
            assert_eq!(UnpackOwner::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn start_time_is_found_after_an_awkward_command_name() {
        let stat =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("1234 (x) S 1"), None);
    }

    #[test]
    fn a_registered_unpack_is_alive_until_dropped() {
        let guard = OwnerGuard::register().unwrap();
        let owner = guard.owner();
        assert!(owner.is_alive());
        let other = OwnerGuard::register().unwrap();
        assert_ne!(other.owner().token, owner.token);
        drop(guard);
        assert!(
            !owner.is_alive(),
            "an abandoned unpack of this process is dead"
        );
        assert!(other.owner().is_alive());
    }

    #[test]
    fn a_process_that_exited_or_was_replaced_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time_of(pid);
        child.wait().unwrap();
        let owner = UnpackOwner {
            pid,
            start_time: start.unwrap_or(1),
            token: 1,
        };
        assert!(!owner.is_alive());
        // Our own pid with another start time is a recycled pid: not the owner.
        let recycled = UnpackOwner {
            pid: std::process::id(),
            start_time: start_time_of(std::process::id()).unwrap() + 1,
            token: 1,
        };
        assert!(!recycled.is_alive());
    }
}
