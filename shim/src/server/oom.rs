//! OOM notifications: the shim watches the container's memory cgroup and calls back
//! each time the kernel's OOM killer acts in it, for the `/tasks/oom` event.
//!
//! On a cgroup v1 memory controller the kernel signals an eventfd registered through
//! `cgroup.event_control` (it also signals when the cgroup is removed, which ends the
//! watch). On cgroup v2, `memory.events` changes are watched with inotify and its
//! `oom_kill` counter compared. Both wait on the shim's runtime without a thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::server::fd::AsyncFile;

/// Which memory cgroup holds a process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemoryCgroup {
    /// A directory of the cgroup v1 memory controller.
    V1(PathBuf),
    /// A directory of the cgroup v2 hierarchy.
    V2(PathBuf),
}

/// Watches the memory cgroup of process `pid` until it is removed, calling `on_oom` for
/// every OOM kill. Returns at once when the cgroup cannot be found or watched.
pub(crate) async fn watch(pid: u32, on_oom: impl Fn()) {
    // Started by Create: on this one-thread runtime, let the Create reply go out before
    // the cgroup lookup (procfs reads and writes).
    tokio::task::yield_now().await;
    let cgroup = match find_memory_cgroup(pid) {
        Ok(Some(cgroup)) => cgroup,
        Ok(None) => {
            tracing::info!("no memory cgroup found; OOM events are not reported");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot find the memory cgroup; OOM events are not reported");
            return;
        }
    };
    let result = match &cgroup {
        MemoryCgroup::V1(dir) => watch_v1(dir, &on_oom).await,
        MemoryCgroup::V2(dir) => watch_v2(dir, &on_oom).await,
    };
    if let Err(error) = result {
        tracing::warn!(%error, ?cgroup, "OOM watch ended");
    }
}

async fn watch_v1(dir: &Path, on_oom: &impl Fn()) -> io::Result<()> {
    let control = std::fs::File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd takes two integers; the returned descriptor is checked below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let event = unsafe { OwnedFd::from_raw_fd(raw) };
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", event.as_raw_fd(), control.as_raw_fd()),
    )?;
    let event = AsyncFile::new(event)?;
    let mut counter = [0u8; 8];
    loop {
        event.read(&mut counter).await?;
        if !dir.exists() {
            // The cgroup was removed: the container is gone.
            return Ok(());
        }
        on_oom();
    }
}

async fn watch_v2(dir: &Path, on_oom: &impl Fn()) -> io::Result<()> {
    let events_file = dir.join("memory.events");
    let watch = rustix::fs::inotify::init(
        rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
    )?;
    rustix::fs::inotify::add_watch(
        &watch,
        &events_file,
        rustix::fs::inotify::WatchFlags::MODIFY,
    )?;
    let watch = AsyncFile::new(watch)?;
    let mut kills = oom_kills(&events_file).unwrap_or(0);
    let mut buf = [0u8; 1024];
    loop {
        watch.read(&mut buf).await?;
        let Some(now) = oom_kills(&events_file) else {
            return Ok(());
        };
        if now > kills {
            on_oom();
        }
        kills = now;
    }
}

/// The `oom_kill` counter of a cgroup v2 `memory.events` file; `None` once it is gone.
fn oom_kills(events_file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events_file).ok()?;
    Some(
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// The memory cgroup directory of `pid`: the v1 memory controller's when there is one
/// (hybrid hosts), else the unified hierarchy's.
fn find_memory_cgroup(pid: u32) -> io::Result<Option<MemoryCgroup>> {
    let membership =
        berth_snapshot::mount::read_proc_table(Path::new(&format!("/proc/{pid}/cgroup")))?;
    let mountinfo = berth_snapshot::mount::read_proc_table(Path::new("/proc/self/mountinfo"))?;
    Ok(memory_cgroup_in(&membership, &mountinfo))
}

/// [`find_memory_cgroup`] on the text of `/proc/<pid>/cgroup` and `/proc/self/mountinfo`.
fn memory_cgroup_in(membership: &str, mountinfo: &str) -> Option<MemoryCgroup> {
    let mut v1_path = None;
    let mut v2_path = None;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            v1_path = Some(path.to_string());
        } else if hierarchy == "0" && controllers.is_empty() {
            v2_path = Some(path.to_string());
        }
    }
    for line in mountinfo.lines() {
        // id parent dev root mountpoint options [optional…] - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(point), Some(fstype), Some(options)) = (
            fields.get(3),
            fields.get(4),
            fields.get(separator + 1),
            fields.get(separator + 3),
        ) else {
            continue;
        };
        let inside = |path: &str| -> Option<PathBuf> {
            let relative = Path::new(path).strip_prefix(root).ok()?;
            Some(Path::new(point).join(relative))
        };
        if *fstype == "cgroup" && options.split(',').any(|o| o == "memory") {
            if let Some(dir) = v1_path.as_deref().and_then(inside) {
                return Some(MemoryCgroup::V1(dir));
            }
        }
        if *fstype == "cgroup2" && v1_path.is_none() {
            if let Some(dir) = v2_path.as_deref().and_then(inside) {
                return Some(MemoryCgroup::V2(dir));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_uses_the_v1_memory_controller() {
        let membership = "4:memory:/berth/t1\n1:cpu:/berth/t1\n0::/berth/t1\n";
        assert_eq!(
            memory_cgroup_in(membership, HYBRID_MOUNTS),
            Some(MemoryCgroup::V1("/sys/fs/cgroup/memory/berth/t1".into()))
        );
    }

    #[test]
    fn a_unified_host_uses_cgroup2() {
        let mounts = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            memory_cgroup_in("0::/system.slice/t1\n", mounts),
            Some(MemoryCgroup::V2("/sys/fs/cgroup/system.slice/t1".into()))
        );
        assert_eq!(memory_cgroup_in("0::/x\n", ""), None);
    }

    #[test]
    fn the_oom_kill_counter_is_read_from_memory_events() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n").unwrap();
        assert_eq!(oom_kills(&file), Some(2));
        assert_eq!(oom_kills(&dir.path().join("gone")), None);
    }
}
