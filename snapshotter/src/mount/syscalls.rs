//! Thin wrappers over `mount(2)` for bind mounts, plain filesystems and propagation.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::c_ulong;

use super::options::MountOptions;
use crate::error::{Error, Result};

/// Turns a path or string into the C string a system call takes.
pub(crate) fn c_string(value: &[u8], what: &str) -> Result<CString> {
    CString::new(value).map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte")))
}

/// Calls `mount(2)`. `source`, `fstype` and `data` may be absent.
pub(crate) fn raw_mount(
    source: Option<&CString>,
    target: &CString,
    fstype: Option<&CString>,
    flags: c_ulong,
    data: Option<&CString>,
) -> std::io::Result<()> {
    let ptr_or_null = |s: Option<&CString>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is either null (allowed by mount(2) for source, fstype and data)
    // or points to a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr_or_null(source),
            target.as_ptr(),
            ptr_or_null(fstype),
            flags,
            ptr_or_null(data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bind-mounts `source` on `target` (recursively for `rbind`), then remounts it with the
/// requested flags (`ro`, `nosuid`, …) since a bind mount ignores them on creation.
pub(crate) fn bind_mount(source: &Path, target: &Path, options: &MountOptions) -> Result<()> {
    let source_c = c_string(source.as_os_str().as_bytes(), "bind source")?;
    let target_c = c_string(target.as_os_str().as_bytes(), "mount target")?;
    let recursive = options.bind.unwrap_or(false);
    let mut flags = libc::MS_BIND;
    if recursive {
        flags |= libc::MS_REC;
    }
    raw_mount(Some(&source_c), &target_c, None, flags, None).map_err(|err| {
        Error::io(
            format!("bind {} on {}", source.display(), target.display()),
            err,
        )
    })?;
    if options.flags != 0 {
        let remount = libc::MS_REMOUNT | libc::MS_BIND | options.flags;
        if let Err(err) = raw_mount(None, &target_c, None, remount, None) {
            // Leave nothing half-done: the caller asked for e.g. a read-only bind.
            let _ = super::unmount::unmount(target);
            return Err(Error::io(
                format!("set options on bind mount {}", target.display()),
                err,
            ));
        }
    }
    Ok(())
}

/// Mounts a filesystem of type `fstype` with the parsed flags and data.
pub(crate) fn mount_filesystem(
    source: &str,
    target: &Path,
    fstype: &str,
    options: &MountOptions,
) -> Result<()> {
    let source_c = c_string(source.as_bytes(), "mount source")?;
    let target_c = c_string(target.as_os_str().as_bytes(), "mount target")?;
    let fstype_c = c_string(fstype.as_bytes(), "filesystem type")?;
    let data = options.data_string();
    let data_c = c_string(data.as_bytes(), "mount options")?;
    raw_mount(
        Some(&source_c),
        &target_c,
        Some(&fstype_c),
        options.flags,
        Some(&data_c),
    )
    .map_err(|err| {
        Error::io(
            format!("mount {fstype} {source} on {}", target.display()),
            err,
        )
    })
}

/// Applies the propagation changes (`rprivate`, `shared`, …) the options asked for.
pub(crate) fn apply_propagation(target: &Path, options: &MountOptions) -> Result<()> {
    if options.propagation.is_empty() {
        return Ok(());
    }
    let target_c = c_string(target.as_os_str().as_bytes(), "mount target")?;
    for &flags in &options.propagation {
        raw_mount(None, &target_c, None, flags, None).map_err(|err| {
            Error::io(
                format!("change mount propagation of {}", target.display()),
                err,
            )
        })?;
    }
    Ok(())
}
