//! A mount that is undone when it goes out of scope.

use std::path::{Path, PathBuf};

use super::{mount_all, unmount_all, Mount};
use crate::error::Result;

/// Mounts made on one target that are unmounted (everything at and below the target) when
/// the guard is dropped, so an early return or a panic never leaves a mount behind.
///
/// Use [`MountGuard::unmount`] to unmount explicitly and see the error, if any.
#[derive(Debug)]
#[must_use = "the mounts are undone as soon as the guard is dropped"]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    /// Performs `mounts` on `target` (see [`mount_all`]) and returns the guard for them.
    pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<Self> {
        mount_all(mounts, target)?;
        Ok(MountGuard {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// The directory the mounts were made on.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure instead of only logging it.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        unmount_all(&self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(err) = unmount_all(&self.target) {
                tracing::warn!(target = %self.target.display(), error = %err,
                    "could not unmount when the mount guard was dropped");
            }
        }
    }
}
