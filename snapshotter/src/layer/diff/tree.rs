//! Writing a whole directory tree as a layer: the fast path of a diff.
//!
//! An overlay's upper directory *is* the change against its lower directories; it only
//! needs overlayfs' spelling turned into OCI's: a 0:0 character device becomes
//! `.wh.<name>`, a directory with `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry.
//! A snapshot without parent is written as it is.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;

use super::emit::{file_type, is_overlay_whiteout, open_dir_at, sorted_names, stat_at, Emitter};
use crate::layer::error::LayerError;
use crate::layer::safe_path::join;
use crate::layer::whiteout::OVERLAY_OPAQUE_XATTR;

/// How to read the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeKind {
    /// An overlay upper directory: convert whiteouts and opaque directories.
    OverlayUpper,
    /// A plain directory: everything in it is new.
    Plain,
}

/// Writes everything below `root` (not the root itself), in sorted order.
pub(crate) fn write_tree<W: Write>(
    emitter: &mut Emitter<W>,
    root: BorrowedFd<'_>,
    kind: TreeKind,
) -> Result<(), LayerError> {
    if kind == TreeKind::OverlayUpper && is_opaque(root) {
        emitter.opaque(b"")?;
    }
    walk(emitter, root, b"", kind)
}

fn walk<W: Write>(
    emitter: &mut Emitter<W>,
    dir: BorrowedFd<'_>,
    dir_path: &[u8],
    kind: TreeKind,
) -> Result<(), LayerError> {
    for name in sorted_names(dir, dir_path)? {
        let path = join(dir_path, name.as_bytes());
        let stat = stat_at(dir, &name, &path)?;
        if kind == TreeKind::OverlayUpper && is_overlay_whiteout(&stat) {
            emitter.whiteout(dir_path, name.as_bytes())?;
            continue;
        }
        emitter.object(dir, &name, &path, &stat)?;
        if file_type(&stat) == FileType::Directory {
            let child = open_dir_at(dir, &name, &path)?;
            if kind == TreeKind::OverlayUpper && is_opaque(child.as_fd()) {
                emitter.opaque(&path)?;
            }
            walk(emitter, child.as_fd(), &path, kind)?;
        }
    }
    Ok(())
}

/// True if overlayfs would treat the directory as opaque.
fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut value = [0u8; 8];
    matches!(
        rustix::fs::fgetxattr(dir, OVERLAY_OPAQUE_XATTR, &mut value[..]),
        Ok(1) if value[0] == b'y'
    )
}
