//! Undoing what a test left mounted: every mount under a directory, deepest first.

use std::path::{Path, PathBuf};

/// Decodes the octal escapes (`\040` for a space, …) that mountinfo uses in paths.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points listed in `mountinfo` text (the fifth field of each line).
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// Every mount point at or below `dir` in this process's mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Unmounts everything at or below `dir`, deepest first; a mount that refuses a normal
/// unmount is detached lazily. Returns a description of each failure.
pub fn unmount_all_under(dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    // A path may be mounted over more than once; keep going while anything is left.
    for _round in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return failures;
        }
        for point in mounts {
            if rustix::mount::unmount(&point, rustix::mount::UnmountFlags::empty()).is_err() {
                if let Err(e) = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH)
                {
                    failures.push(format!("unmounting {}: {e}", point.display()));
                }
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 98:0 / /tmp/x rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(text),
            vec![PathBuf::from("/mnt/with space"), PathBuf::from("/tmp/x")]
        );
    }

    #[test]
    fn nested_mounts_are_all_removed() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let inner = outer.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("inner")).unwrap();
        for target in [&outer, &inner] {
            rustix::mount::mount_bind(&src, target).unwrap();
        }
        assert!(mounts_under(dir.path()).len() >= 2);
        assert!(unmount_all_under(dir.path()).is_empty());
        assert!(mounts_under(dir.path()).is_empty());
    }
}
