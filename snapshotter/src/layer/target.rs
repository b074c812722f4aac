//! Reading what a mount list means for the layer code, and temporary mounts for the cases
//! that have no shortcut.
//!
//! The snapshotter hands out an `overlay` mount (`upperdir=…`, `lowerdir=a:b:…`) for an
//! active snapshot with parents, and a `bind` mount of the snapshot's directory for one
//! without. Both can be written and read directly, without mounting anything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mount::{Mount, MountGuard};

use super::error::LayerError;

/// The parts of an overlay mount the layer code uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverlayParts {
    /// `upperdir`, if the overlay is writable.
    pub upper: Option<PathBuf>,
    /// `lowerdir` entries, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// The value of `key=` among `options`, last one winning.
fn option_value<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find_map(|option| option.strip_prefix(key)?.strip_prefix('='))
}

fn is_read_only(options: &[String]) -> bool {
    // Later options win, as with mount(8).
    options
        .iter()
        .rev()
        .find_map(|option| match option.as_str() {
            "ro" => Some(true),
            "rw" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The overlay described by `mount`, if it is an overlay with absolute directories.
pub(crate) fn overlay_parts(mount: &Mount) -> Option<OverlayParts> {
    if mount.kind != "overlay" {
        return None;
    }
    let upper = option_value(&mount.options, "upperdir").map(PathBuf::from);
    let lowers: Vec<PathBuf> = option_value(&mount.options, "lowerdir")
        .map(|value| {
            value
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let all_absolute = upper.iter().chain(lowers.iter()).all(|p| p.is_absolute());
    if !all_absolute || (upper.is_none() && lowers.is_empty()) {
        return None;
    }
    Some(OverlayParts { upper, lowers })
}

/// The directory of a bind mount and whether it is read-only.
pub(crate) fn bind_source(mount: &Mount) -> Option<(PathBuf, bool)> {
    let is_bind = mount.kind == "bind" || mount.options.iter().any(|o| o == "bind" || o == "rbind");
    let source = PathBuf::from(&mount.source);
    (is_bind && source.is_absolute()).then(|| (source, is_read_only(&mount.options)))
}

/// The directories a mount list shows, topmost first, if it is one overlay or one bind
/// mount (an empty list shows nothing).
pub(crate) fn layer_dirs(mounts: &[Mount]) -> Option<Vec<PathBuf>> {
    match mounts {
        [] => Some(Vec::new()),
        [mount] => {
            if let Some(parts) = overlay_parts(mount) {
                Some(parts.upper.into_iter().chain(parts.lowers).collect())
            } else {
                bind_source(mount).map(|(dir, _)| vec![dir])
            }
        }
        _ => None,
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A mount list mounted on a fresh temporary directory; unmounted and removed on drop.
pub(crate) struct TempMount {
    guard: Option<MountGuard>,
    dir: PathBuf,
}

impl TempMount {
    /// Mounts `mounts` on a new directory under `parent` (read-only if asked).
    pub fn new(mounts: &[Mount], parent: &Path, read_only: bool) -> Result<Self, LayerError> {
        let dir = loop {
            let candidate = parent.join(format!(
                "berth-layer-{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(LayerError::io(
                        format!("create temporary mount point in {}", parent.display()),
                        err,
                    ))
                }
            }
        };
        let mounts: Vec<Mount> = if read_only {
            mounts
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.options.retain(|o| o != "rw");
                    m.options.push("ro".to_string());
                    m
                })
                .collect()
        } else {
            mounts.to_vec()
        };
        match MountGuard::mount_all(&mounts, &dir) {
            Ok(guard) => Ok(TempMount {
                guard: Some(guard),
                dir,
            }),
            Err(err) => {
                let _ = std::fs::remove_dir(&dir);
                Err(LayerError::Mount(Box::new(err)))
            }
        }
    }

    /// Where the mounts are.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Unmounts and removes the directory, reporting an unmount failure.
    pub fn close(mut self) -> Result<(), LayerError> {
        let result = match self.guard.take() {
            Some(guard) => guard.unmount().map_err(|e| LayerError::Mount(Box::new(e))),
            None => Ok(()),
        };
        if result.is_ok() {
            let _ = std::fs::remove_dir(&self.dir);
        }
        result
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            drop(guard);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn overlay_options_are_read() {
        let m = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/s/2/work",
                "upperdir=/s/2/fs",
                "lowerdir=/s/1/fs:/s/0/fs",
            ],
        );
        let parts = overlay_parts(&m).unwrap();
        assert_eq!(parts.upper, Some(PathBuf::from("/s/2/fs")));
        assert_eq!(
            parts.lowers,
            vec![PathBuf::from("/s/1/fs"), PathBuf::from("/s/0/fs")]
        );
        assert_eq!(
            layer_dirs(&[m]).unwrap(),
            vec![
                PathBuf::from("/s/2/fs"),
                PathBuf::from("/s/1/fs"),
                PathBuf::from("/s/0/fs")
            ]
        );
        assert!(overlay_parts(&mount("overlay", "overlay", &["lowerdir=rel:/abs"])).is_none());
    }

    #[test]
    fn bind_mounts_are_read() {
        let m = mount("bind", "/s/1/fs", &["rbind", "rw"]);
        assert_eq!(bind_source(&m), Some((PathBuf::from("/s/1/fs"), false)));
        let m = mount("bind", "/s/1/fs", &["rbind", "ro"]);
        assert_eq!(bind_source(&m), Some((PathBuf::from("/s/1/fs"), true)));
        let m = mount("none", "/s/1/fs", &["bind"]);
        assert!(bind_source(&m).is_some());
        assert!(bind_source(&mount("ext4", "/dev/sda", &[])).is_none());
        assert_eq!(layer_dirs(&[]).unwrap(), Vec::<PathBuf>::new());
    }
}
