//! Undoing mounts: the top one on a directory, or everything at and below it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use crate::error::{Error, Result};

/// How often an unmount is retried while the kernel says the mount is busy (a process that
/// just exited may still hold it for a moment), and how long to wait between tries.
const BUSY_RETRIES: u32 = 20;
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// Upper bound on the mounts [`unmount_all`] removes, so a mount that keeps reappearing
/// (e.g. propagated back from elsewhere) cannot loop forever.
const MAX_MOUNTS_REMOVED: usize = 10_000;

/// Unmounts the topmost mount on `target`. Fails if nothing is mounted there.
pub fn unmount(target: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(Errno::BUSY) if tries < BUSY_RETRIES => {
                tries += 1;
                std::thread::sleep(BUSY_PAUSE);
            }
            Err(err) => {
                return Err(Error::io(format!("unmount {}", target.display()), err));
            }
        }
    }
}

/// Unmounts every mount on `target` and below it, deepest and most recent first, until
/// nothing is mounted there. Succeeds when nothing was mounted, or `target` does not exist.
pub fn unmount_all(target: &Path) -> Result<()> {
    let Some(target) = resolve_target(target)? else {
        return Ok(());
    };
    let mounted = mounts_at_or_below(&target)?;
    remove_mounts_from(&target, mounted, |candidates| {
        // Normally the last candidate goes first; one hidden under a mount stacked on top
        // of it refuses (EINVAL), so fall back to the next until one is removed.
        let mut last_error = None;
        for point in candidates.iter().rev() {
            match unmount(point) {
                Ok(()) => return Ok(()),
                Err(err) => last_error = Some(err),
            }
        }
        last_error.map_or(Ok(()), Err)
    })
}

/// Takes every mount at and below `target` out of the mount table at once (a lazy unmount)
/// and returns a handle on the filesystem that was mounted at `target`, which stays alive
/// until the handle is dropped. `None` when nothing was mounted there.
///
/// Why: when the last user of an overlay lets go of it, the kernel flushes its upper
/// filesystem to disk before the unmount returns. A caller that must answer quickly (a
/// shim deleting a task) detaches now, answers, and pays for the flush later by dropping
/// the handle (or exiting). Nothing can reach the detached filesystem through a path.
pub fn detach_all(target: &Path) -> Result<Option<OwnedFd>> {
    let Some(target) = resolve_target(target)? else {
        return Ok(None);
    };
    let mounted = mounts_at_or_below(&target)?;
    if mounted.is_empty() {
        return Ok(None);
    }
    let pin = rustix::fs::open(
        &target,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| Error::io(format!("open {}", target.display()), err))?;
    remove_mounts_from(&target, mounted, |candidates| match candidates.last() {
        // A lazy unmount of the topmost takes everything below it along.
        Some(point) => rustix::mount::unmount(point, UnmountFlags::DETACH)
            .map_err(|err| Error::io(format!("detach {}", point.display()), err)),
        None => Ok(()),
    })?;
    Ok(Some(pin))
}

/// `target` with symlinks resolved (mountinfo lists real paths); `None` if it is gone.
fn resolve_target(target: &Path) -> Result<Option<PathBuf>> {
    match std::fs::canonicalize(target) {
        Ok(path) => Ok(Some(path)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io(format!("resolve {}", target.display()), err)),
    }
}

/// Calls `remove_one` with the mounts at or below `target` (see [`mounts_at_or_below`]),
/// starting from `mounted`, the caller's fresh reading of them, until there are none;
/// gives up after [`MAX_MOUNTS_REMOVED`] rounds.
fn remove_mounts_from(
    target: &Path,
    mounted: Vec<PathBuf>,
    mut remove_one: impl FnMut(&[PathBuf]) -> Result<()>,
) -> Result<()> {
    let mut candidates = mounted;
    for _ in 0..MAX_MOUNTS_REMOVED {
        if candidates.is_empty() {
            return Ok(());
        }
        remove_one(&candidates)?;
        candidates = mounts_at_or_below(target)?;
    }
    Err(Error::FailedPrecondition(format!(
        "mounts under {} keep reappearing; gave up after {MAX_MOUNTS_REMOVED}",
        target.display()
    )))
}

/// The mount points at or below `target`, ordered so the one to unmount first is last:
/// shallower paths before deeper ones, and among equals in the order they were mounted.
fn mounts_at_or_below(target: &Path) -> Result<Vec<PathBuf>> {
    let table = super::read_proc_table(Path::new("/proc/self/mountinfo"))
        .map_err(|err| Error::io("read /proc/self/mountinfo", err))?;
    let mut found: Vec<PathBuf> = mount_points(&table)
        .filter(|point| point.starts_with(target))
        .collect();
    // A stable sort keeps the mount order among mounts on the same path.
    found.sort_by_key(|point| point.components().count());
    Ok(found)
}

/// The mount point column (the fifth) of each line of a `mountinfo` table, unescaped.
fn mount_points(table: &str) -> impl Iterator<Item = PathBuf> + '_ {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
}

/// Undoes the kernel's `\NNN` octal escapes (space, tab, newline, backslash) in mountinfo.
fn unescape_octal(field: &str) -> String {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let (b'\\', Some(digits)) = (bytes[i], bytes.get(i + 1..i + 4)) {
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::ffi::OsString::from_vec(out)
        .into_string()
        .unwrap_or_else(|raw| raw.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal(r"/tab\011x\134y"), "/tab\tx\\y");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }

    #[test]
    fn the_fifth_column_is_the_mount_point() {
        let table = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                     30 22 0:30 / /mnt/with\\040space rw - tmpfs tmpfs rw\n";
        let points: Vec<PathBuf> = mount_points(table).collect();
        assert_eq!(
            points,
            vec![PathBuf::from("/proc"), PathBuf::from("/mnt/with space")]
        );
    }
}
