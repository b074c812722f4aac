//! System calls the layer code needs that `rustix` does not wrap: `fchmodat2` and the
//! `*xattrat` family, which act on a name inside a directory fd without following a
//! symlink in the last component.
//!
//! Their numbers are the same on every architecture (new system calls share one table).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const SYS_FCHMODAT2: libc::c_long = 452;
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;

/// The kernel's `struct xattr_args`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn check(ret: libc::c_long) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `fchmodat2(dir, name, mode, AT_SYMLINK_NOFOLLOW)`: changes the mode of `name` itself,
/// never of what a symlink there points to.
pub(crate) fn chmod_at_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; the other
    // arguments are plain integers.
    let ret = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::c_uint,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(ret).map(drop)
}

/// `setxattrat(dir, name, AT_SYMLINK_NOFOLLOW, attr, value)`: sets an extended attribute
/// on `name` itself (a symlink, a device node), without opening it.
pub(crate) fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    attr: &CStr,
    value: &[u8],
) -> io::Result<()> {
    let size = u32::try_from(value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr value too large"))?;
    let args = XattrArgs {
        value: value.as_ptr() as u64,
        size,
        flags: 0,
    };
    // SAFETY: all pointers reference live, correctly sized memory for the duration of the
    // call: two NUL-terminated strings, and `args` whose `value` points at `size` bytes.
    let ret = unsafe {
        libc::syscall(
            SYS_SETXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            attr.as_ptr(),
            &args as *const XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    check(ret).map(drop)
}

/// Reads one extended attribute of `name` itself (not following a symlink).
pub(crate) fn get_xattr_at(dir: BorrowedFd<'_>, name: &CStr, attr: &CStr) -> io::Result<Vec<u8>> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let mut args = XattrArgs {
            value: buffer.as_mut_ptr() as u64,
            size: buffer.len() as u32,
            flags: 0,
        };
        // SAFETY: the strings are NUL-terminated and live; `args.value` points at
        // `args.size` writable bytes (zero bytes on the first, size-querying call).
        let ret = unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                attr.as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        };
        match check(ret) {
            Ok(len) if buffer.is_empty() && len > 0 => buffer.resize(len, 0),
            Ok(len) => {
                buffer.truncate(len);
                return Ok(buffer);
            }
            // The value grew between the two calls: ask again.
            Err(err) if err.raw_os_error() == Some(libc::ERANGE) => buffer.clear(),
            Err(err) => return Err(err),
        }
    }
}

/// Lists the extended attribute names of `name` itself (not following a symlink).
pub(crate) fn list_xattrs_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<Vec<u8>>> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        // SAFETY: `name` is NUL-terminated and live; the list pointer references
        // `buffer.len()` writable bytes (zero on the size-querying call).
        let ret = unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        match check(ret) {
            Ok(0) => return Ok(Vec::new()),
            Ok(len) if buffer.is_empty() => buffer.resize(len, 0),
            Ok(len) => {
                buffer.truncate(len);
                return Ok(buffer
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(err) if err.raw_os_error() == Some(libc::ERANGE) => buffer.clear(),
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn xattrs_round_trip_on_a_symlink_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("l")).unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        let name = c"l";
        set_xattr_at(fd.as_fd(), name, c"trusted.berth", b"v1").unwrap();
        assert_eq!(
            get_xattr_at(fd.as_fd(), name, c"trusted.berth").unwrap(),
            b"v1"
        );
        let names = list_xattrs_at(fd.as_fd(), name).unwrap();
        assert!(names.contains(&b"trusted.berth".to_vec()), "{names:?}");
    }

    #[test]
    fn chmod_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("l")).unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        let err = chmod_at_nofollow(fd.as_fd(), c"l", 0o777).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
        chmod_at_nofollow(fd.as_fd(), c"target", 0o640).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
    }
}
