//! Whiteouts and opaque directories, in the overlay or the deleting style.

use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode, XattrFlags};
use rustix::io::Errno;

use super::{cstring, errno_io, resolve_error, Touched, Unpacker, WhiteoutStyle};
use crate::layer::error::{display_name, LayerError};
use crate::layer::root_dir;
use crate::layer::safe_path::join;
use crate::layer::whiteout::OVERLAY_OPAQUE_XATTR;

impl Unpacker<'_, '_> {
    /// `parent/.wh.target`: hides `target` of the layers below.
    pub(super) fn whiteout(
        &mut self,
        parent_path: &[u8],
        target: &[u8],
        entry: &[u8],
    ) -> Result<(), LayerError> {
        let path = join(parent_path, target);
        if self.touched.contains_key(&path) {
            // Whiteouts only hide what lower layers hold, never this layer's own files.
            return Ok(());
        }
        let name = cstring(target);
        match self.style {
            WhiteoutStyle::Overlay { .. } => {
                if self.touch(&path, Touched::Other) {
                    self.drain()?;
                }
                let parent = self.parent_dir(parent_path, entry)?;
                let whiteout = || {
                    rustix::fs::mknodat(
                        &parent.fd,
                        name.as_c_str(),
                        FileType::CharacterDevice,
                        Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                };
                self.create_replacing(&parent, &name, &path, whiteout)?
                    .map_err(|e| {
                        LayerError::io(
                            format!("create whiteout for {}", display_name(&path)),
                            errno_io(e),
                        )
                    })
            }
            WhiteoutStyle::Delete => {
                let parent = match self.root.resolve(parent_path) {
                    Ok(handle) => handle,
                    // Nothing there to hide.
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                    Err(err) => return Err(resolve_error(err, parent_path, entry)),
                };
                self.clear_name(&parent, &name, &path)
            }
        }
    }

    /// `dir/.wh..wh..opq`: hides everything the layers below hold in `dir`.
    pub(super) fn opaque(&mut self, dir_path: &[u8], entry: &[u8]) -> Result<(), LayerError> {
        match self.style {
            WhiteoutStyle::Overlay { .. } => {
                let needs_drain = match self.touched.get(dir_path) {
                    _ if dir_path.is_empty() => false,
                    Some(Touched::Dir) => false,
                    Some(Touched::Other) => true,
                    None => self.touch(dir_path, Touched::Dir),
                };
                if needs_drain {
                    self.drain()?;
                }
                let dir = self.parent_dir(dir_path, entry)?;
                rustix::fs::fsetxattr(&dir.fd, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| {
                        LayerError::io(
                            format!("mark {} opaque", display_name(dir_path)),
                            errno_io(e),
                        )
                    })
            }
            WhiteoutStyle::Delete => {
                let dir = match self.root.resolve(dir_path) {
                    Ok(handle) => handle,
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                    Err(err) => return Err(resolve_error(err, dir_path, entry)),
                };
                self.drain()?;
                let names = root_dir::list_dir(dir.fd.as_fd()).map_err(|e| {
                    LayerError::io(format!("list {}", display_name(dir_path)), errno_io(e))
                })?;
                for name in names {
                    let child = join(dir_path, name.as_bytes());
                    if self.touched.contains_key(&child) {
                        continue;
                    }
                    root_dir::remove_tree(dir.fd.as_fd(), &name).map_err(|e| {
                        LayerError::io(format!("remove {}", display_name(&child)), errno_io(e))
                    })?;
                }
                self.root.forget_all();
                Ok(())
            }
        }
    }
}
