//! Performing, for real, the mounts that `ctr snapshots mounts` prints.
//!
//! ctr prints one shell command per mount: `mount -t <type> <source> <target> -o <options>`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One mount as printed by `ctr snapshots mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintedMount {
    /// Filesystem type (`overlay`, `bind`).
    pub kind: String,
    /// Mount source (`overlay`, or a directory for a bind mount).
    pub source: String,
    /// Where ctr was told to mount it.
    pub target: PathBuf,
    /// Mount options, split on `,`.
    pub options: Vec<String>,
}

impl PrintedMount {
    /// The overlay lower directories, topmost first (empty if there are none).
    pub fn lowerdirs(&self) -> Vec<String> {
        self.options
            .iter()
            .filter_map(|o| o.strip_prefix("lowerdir="))
            .flat_map(|v| v.split(':').map(str::to_string))
            .collect()
    }

    /// Length of the options string handed to mount(2).
    pub fn options_len(&self) -> usize {
        self.options.join(",").len()
    }
}

/// Parses ctr's `mount -t T S TARGET -o OPTS` lines; panics on any other line, since
/// that means ctr printed something the test does not understand.
pub fn parse_printed_mounts(stdout: &str) -> Vec<PrintedMount> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["mount", "-t", kind, source, target, rest @ ..] => PrintedMount {
                    kind: kind.to_string(),
                    source: source.to_string(),
                    target: PathBuf::from(target),
                    options: match rest {
                        ["-o", options] => options.split(',').map(str::to_string).collect(),
                        _ => Vec::new(),
                    },
                },
                _ => panic!("unexpected line from `ctr snapshots mounts`: {line:?}"),
            }
        })
        .collect()
}

/// Mounts that are undone (unmounted, innermost first) on drop.
#[derive(Debug, Default)]
pub struct MountGuard {
    targets: Vec<PathBuf>,
}

impl MountGuard {
    /// Records that `target` was mounted and must be unmounted on drop.
    pub fn push(&mut self, target: PathBuf) {
        self.targets.push(target);
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for target in self.targets.iter().rev() {
            if rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).is_err() {
                let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}

/// Why a mount could not be performed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `/bin/mount` could not be run at all.
    #[error("running /bin/mount: {0}")]
    Spawn(#[source] std::io::Error),
    /// `/bin/mount` ran and failed.
    #[error("/bin/mount -t {kind} … {target} failed ({status}): {stderr}")]
    BinMount {
        /// Filesystem type.
        kind: String,
        /// Mount target.
        target: PathBuf,
        /// Exit status as text.
        status: String,
        /// What `/bin/mount` printed on stderr.
        stderr: String,
    },
    /// Berth's mount code refused or failed.
    #[error("mounting {target}: {message}")]
    Berth {
        /// Mount target.
        target: PathBuf,
        /// The mount code's error.
        message: String,
    },
}

/// Runs each printed mount with `/bin/mount`, exactly as a person pasting ctr's output
/// into a shell would.
pub fn mount_with_bin_mount(mounts: &[PrintedMount]) -> Result<MountGuard, MountError> {
    let mut guard = MountGuard::default();
    for m in mounts {
        let mut cmd = Command::new("/bin/mount");
        cmd.arg("-t").arg(&m.kind).arg(&m.source).arg(&m.target);
        if !m.options.is_empty() {
            cmd.arg("-o").arg(m.options.join(","));
        }
        let out = cmd.output().map_err(MountError::Spawn)?;
        if !out.status.success() {
            return Err(MountError::BinMount {
                kind: m.kind.clone(),
                target: m.target.clone(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        guard.push(m.target.clone());
    }
    Ok(guard)
}

/// Performs the mounts a daemon handed out for a snapshot the way the shim does: with
/// Berth's own mount code, which mounts overlays with more lower layers than fit in one
/// page of mount(2) options. Used for both daemons, so the 128-layer test proves that code
/// on Berth's mounts and on containerd's alike.
pub fn mount_like_the_shim(mounts: &[PrintedMount]) -> Result<MountGuard, MountError> {
    let mut guard = MountGuard::default();
    for m in mounts {
        let mount = berth_snapshot::Mount {
            kind: m.kind.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        };
        berth_snapshot::mount::mount_all(std::slice::from_ref(&mount), &m.target).map_err(|e| {
            MountError::Berth {
                target: m.target.clone(),
                message: e.to_string(),
            }
        })?;
        guard.push(m.target.clone());
    }
    Ok(guard)
}

/// Creates (if needed) and returns `<dir>/<name>`, a mount target.
pub fn mount_target(dir: &Path, name: &str) -> PathBuf {
    let target = dir.join(name);
    std::fs::create_dir_all(&target).expect("creating a mount target");
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctr_mount_lines_are_parsed() {
        let text = "mount -t overlay overlay /mnt/x -o index=off,workdir=/r/2/work,upperdir=/r/2/fs,lowerdir=/r/1/fs:/r/0/fs\n\
                    mount -t bind /r/1/fs /mnt/y -o rw,rbind\n";
        let mounts = parse_printed_mounts(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].kind, "overlay");
        assert_eq!(mounts[0].target, PathBuf::from("/mnt/x"));
        assert_eq!(mounts[0].lowerdirs(), vec!["/r/1/fs", "/r/0/fs"]);
        assert_eq!(mounts[1].source, "/r/1/fs");
        assert_eq!(mounts[1].options, vec!["rw", "rbind"]);
    }

    #[test]
    fn per_layer_api_mounts_more_layers_than_one_page_holds() {
        let dir = tempfile::tempdir().unwrap();
        // Long absolute paths: 100 of them are far more than 4096 bytes of options.
        let deep = dir.path().join("x".repeat(60));
        let mut lowers = Vec::new();
        for i in 0..100 {
            let layer = deep.join(format!("layer-{i:03}"));
            std::fs::create_dir_all(&layer).unwrap();
            std::fs::write(layer.join(format!("f{i}")), format!("{i}")).unwrap();
            lowers.push(layer.display().to_string());
        }
        lowers.reverse();
        let target = mount_target(dir.path(), "merged");
        let m = PrintedMount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: target.clone(),
            options: vec![format!("lowerdir={}", lowers.join(":"))],
        };
        assert!(m.options_len() > 4096);
        assert!(mount_with_bin_mount(std::slice::from_ref(&m)).is_err());
        let guard = mount_like_the_shim(std::slice::from_ref(&m)).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(target.join("f99")).unwrap(), "99");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 100);
        drop(guard);
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }
}
