//! Mount descriptions and the code that performs them.
//!
//! A [`Mount`] is what the snapshotter hands out (and what clients hand back): a filesystem
//! type, a source and a list of `mount -o` style options. [`mount_all`] performs a list of
//! them on one target, [`unmount`] / [`unmount_all`] undo them, and [`MountGuard`] ties the
//! two together so a mount never outlives a failed operation.
//!
//! Overlays are performed with the kernel's per-layer mount API (`fsopen` + `lowerdir+`)
//! when it is there, so any number of lower layers fits; on older kernels the classic
//! `mount(2)` is used, with lower paths made relative to their common directory when the
//! absolute option string would not fit in the one page `mount(2)` accepts.

mod guard;
mod options;
mod overlay;
mod syscalls;
mod unmount;

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use guard::MountGuard;
pub use unmount::{detach_all, unmount, unmount_all};

/// Room for a kernel table read in one go: procfs files report a size of 0, and a read
/// that starts from an empty buffer probes with tiny reads (about ten for a 3 KiB
/// mountinfo), each of which makes the kernel format the table again.
const PROC_TABLE_CAPACITY: usize = 64 * 1024;

/// The text of a procfs table such as `/proc/self/mountinfo` or `/proc/<pid>/cgroup`,
/// read with a buffer large enough that a usual table takes one read.
pub fn read_proc_table(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(PROC_TABLE_CAPACITY);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// One mount as handed to clients (containerd's `containerd.types.Mount`):
/// `mount -t <kind> <source> <target> -o <options joined by ','>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type, e.g. `overlay` or `bind`.
    pub kind: String,
    /// Mount source, e.g. `overlay` or a directory for a bind mount.
    pub source: String,
    /// Mount options such as `lowerdir=…`, `rbind`, `ro`.
    pub options: Vec<String>,
}

impl Mount {
    /// Performs this one mount on `target` (which must be an existing directory).
    ///
    /// `bind` mounts (or any mount whose options say `bind`/`rbind`) become bind mounts,
    /// read-only if asked; `overlay` mounts go through the overlay code that copes with
    /// many layers; anything else is passed to `mount(2)` as is.
    pub fn mount(&self, target: &Path) -> Result<()> {
        check_target(target)?;
        let parsed = options::MountOptions::parse(&self.options);
        if self.kind == "bind" || parsed.is_bind() {
            syscalls::bind_mount(Path::new(&self.source), target, &parsed)?;
        } else if self.kind == "overlay" {
            overlay::mount_overlay(&self.source, target, &parsed)?;
        } else {
            syscalls::mount_filesystem(&self.source, target, &self.kind, &parsed)?;
        }
        if let Err(err) = syscalls::apply_propagation(target, &parsed) {
            let _ = unmount(target);
            return Err(err);
        }
        Ok(())
    }
}

/// Performs `mounts` in order on `target`, each on top of the previous one (as containerd
/// does). If one fails, those already made are undone before the error is returned.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (done, mount) in mounts.iter().enumerate() {
        if let Err(err) = mount.mount(target) {
            for _ in 0..done {
                if let Err(undo) = unmount(target) {
                    tracing::warn!(target = %target.display(), error = %undo,
                        "could not undo a mount after a later mount failed");
                }
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Checks that `target` can take a mount: it must exist and be a directory.
fn check_target(target: &Path) -> Result<()> {
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "mount target {} is not a directory",
            target.display()
        ))),
        Err(err) => Err(Error::io(
            format!("inspect mount target {}", target.display()),
            err,
        )),
    }
}
