//! Reading a file of a container's root filesystem without ever leaving it.
//!
//! The rootfs comes from an image, and an image may ship `/etc/passwd` as a symlink to
//! `/etc/passwd` or `../../../etc/passwd`. Resolved naively on the host, that reads the host's
//! file. Here every component is resolved by the kernel as if the rootfs were `/`
//! (`openat2` with `RESOLVE_IN_ROOT`), so such links stay inside the rootfs. Only regular
//! files are read, opened non-blocking so that a FIFO or device cannot stall or feed us.

use std::io::Read;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// How often a lookup is retried when the kernel reports a concurrent rename (`EAGAIN`).
const RETRIES: usize = 16;

/// Reads the file at `path` (absolute as seen inside the container, e.g. `/etc/passwd`) of the
/// root filesystem `rootfs`, at most `max_bytes` long. `Ok(None)` if it does not exist.
pub fn read_rootfs_file(rootfs: &Path, path: &str, max_bytes: u64) -> Result<Option<String>> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::errno("open root filesystem", rootfs))?;
    let inside = rootfs.join(path.trim_start_matches('/'));
    let relative = path.trim_start_matches('/');
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;

    let mut attempts = 0;
    let fd = loop {
        match rustix::fs::openat2(&root, relative, flags, Mode::empty(), resolve) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
            Err(Errno::AGAIN) | Err(Errno::INTR) if attempts < RETRIES => attempts += 1,
            Err(errno) => {
                return Err(Error::errno("open inside the root filesystem", &inside)(
                    errno,
                ))
            }
        }
    };
    let stat = rustix::fs::fstat(&fd).map_err(Error::errno("stat", &inside))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Error::InvalidArgument(format!(
            "{path} in the root filesystem is not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Error::io("read", &inside))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::InvalidArgument(format!(
            "{path} in the root filesystem is larger than {max_bytes} bytes"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_a_file_and_follows_links_that_stay_inside() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::create_dir_all(rootfs.path().join("usr/share")).unwrap();
        std::fs::write(rootfs.path().join("usr/share/passwd"), "inside\n").unwrap();
        // Absolute target: means /usr/share/passwd of the container.
        symlink("/usr/share/passwd", rootfs.path().join("etc/passwd")).unwrap();
        let text = read_rootfs_file(rootfs.path(), "/etc/passwd", 1024).unwrap();
        assert_eq!(text.as_deref(), Some("inside\n"));
    }

    #[test]
    fn links_pointing_outside_resolve_inside_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(tmp.path().join("secret"), "host secret\n").unwrap();
        symlink("../../secret", rootfs.join("etc/group")).unwrap();
        symlink("/etc/hostname", rootfs.join("etc/passwd")).unwrap();

        // `../..` stops at the rootfs: the link names rootfs/secret, which does not exist.
        assert_eq!(read_rootfs_file(&rootfs, "/etc/group", 1024).unwrap(), None);
        // The host's /etc/hostname is not read; the rootfs has none.
        assert_eq!(
            read_rootfs_file(&rootfs, "/etc/passwd", 1024).unwrap(),
            None
        );
    }

    #[test]
    fn missing_files_non_regular_files_and_huge_files() {
        let rootfs = tempfile::tempdir().unwrap();
        assert_eq!(
            read_rootfs_file(rootfs.path(), "/etc/passwd", 10).unwrap(),
            None
        );

        std::fs::create_dir_all(rootfs.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            read_rootfs_file(rootfs.path(), "/etc/passwd", 10),
            Err(Error::InvalidArgument(_))
        ));

        let fifo = rootfs.path().join("etc/group");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            read_rootfs_file(rootfs.path(), "/etc/group", 10),
            Err(Error::InvalidArgument(_))
        ));

        std::fs::write(rootfs.path().join("big"), "x".repeat(11)).unwrap();
        assert!(matches!(
            read_rootfs_file(rootfs.path(), "/big", 10),
            Err(Error::InvalidArgument(_))
        ));
        std::fs::write(rootfs.path().join("small"), "x".repeat(10)).unwrap();
        assert!(read_rootfs_file(rootfs.path(), "/small", 10)
            .unwrap()
            .is_some());
    }
}
