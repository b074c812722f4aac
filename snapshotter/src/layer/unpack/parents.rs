//! Missing parent directories: created one component at a time inside the root.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{cstring, errno_io, resolve_error, Unpacker, WhiteoutStyle};
use crate::layer::archive::Timestamp;
use crate::layer::error::{display_name, LayerError};
use crate::layer::metadata::{self, Attributes};
use crate::layer::root_dir::{dir_flags, DirHandle};

impl Unpacker<'_, '_> {
    /// Resolves the directory `rel` inside the root, creating missing components.
    pub(super) fn parent_dir(
        &mut self,
        rel: &[u8],
        entry: &[u8],
    ) -> Result<Arc<DirHandle>, LayerError> {
        match self.root.resolve(rel) {
            Ok(handle) => return Ok(handle),
            Err(Errno::NOENT | Errno::NOTDIR) => {}
            Err(err) => return Err(resolve_error(err, rel, entry)),
        }
        let mut current = self.root.handle().clone();
        let mut end = 0;
        for component in rel.split(|&b| b == b'/') {
            end += component.len();
            let prefix = &rel[..end];
            end += 1;
            match self.root.resolve(prefix) {
                Ok(handle) => {
                    current = handle;
                    continue;
                }
                Err(Errno::NOENT) => {}
                Err(Errno::NOTDIR) => {
                    return Err(LayerError::NotADirectory {
                        entry: display_name(entry),
                        component: display_name(prefix),
                    })
                }
                Err(err) => return Err(resolve_error(err, prefix, entry)),
            }
            let name = cstring(component);
            let attrs = self.implicit_dir_attributes(prefix);
            let mode = Mode::from_raw_mode(attrs.mode & 0o777);
            match rustix::fs::mkdirat(&current.fd, name.as_c_str(), mode) {
                Ok(()) => {}
                // Something is there yet did not resolve: a symlink to nowhere.
                Err(Errno::EXIST) => {
                    return Err(LayerError::NotADirectory {
                        entry: display_name(entry),
                        component: display_name(prefix),
                    })
                }
                Err(err) => {
                    return Err(LayerError::io(
                        format!("create parent directory {}", display_name(prefix)),
                        errno_io(err),
                    ))
                }
            }
            let fd = rustix::fs::openat(
                &current.fd,
                name.as_c_str(),
                dir_flags() | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| {
                LayerError::io(
                    format!("open directory {}", display_name(prefix)),
                    errno_io(e),
                )
            })?;
            metadata::apply_to_fd(
                fd.as_fd(),
                &attrs,
                &self.creator,
                current.setgid,
                false,
                prefix,
            )?;
            let handle = Arc::new(DirHandle::new(fd).map_err(|e| {
                LayerError::io(
                    format!("inspect directory {}", display_name(prefix)),
                    errno_io(e),
                )
            })?);
            self.root.remember(prefix, handle.clone());
            current = handle;
        }
        Ok(current)
    }

    /// The metadata of a directory created as a missing parent: in an overlay upper
    /// directory, that of the same directory in the lower layers (its times are set at
    /// the end); elsewhere 0755 root.
    fn implicit_dir_attributes(&mut self, path: &[u8]) -> Attributes {
        let lower = match &self.style {
            WhiteoutStyle::Overlay { lowers } => lower_dir_attributes(lowers, path),
            WhiteoutStyle::Delete => None,
        };
        match lower {
            Some(attrs) => {
                self.deferred_times
                    .push((path.to_vec(), attrs.timestamps()));
                attrs
            }
            None => Attributes::plain(0o755, 0, 0, Timestamp::default()),
        }
    }
}

/// The metadata of directory `path` in the first lower layer that has something there,
/// or `None` if that something is not a directory (or nothing has it).
fn lower_dir_attributes(lowers: &[OwnedFd], path: &[u8]) -> Option<Attributes> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    for lower in lowers {
        match rustix::fs::openat2(lower, path, flags, Mode::empty(), resolve) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd).ok()?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                    return None;
                }
                let mtime = Timestamp {
                    seconds: stat.st_mtime,
                    nanos: stat.st_mtime_nsec as u32,
                };
                return Some(Attributes::plain(
                    stat.st_mode & 0o7777,
                    stat.st_uid,
                    stat.st_gid,
                    mtime,
                ));
            }
            Err(Errno::NOENT) => continue,
            Err(_) => return None,
        }
    }
    None
}
