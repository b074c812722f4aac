//! A read-only look at an image's root filesystem, for what a spec needs from it: the
//! image's own `/etc/passwd` and `/etc/group`, to turn `USER app` into ids.
//!
//! The view is a snapshot made with Snapshots.View on top of the image's top layer,
//! mounted read-only on a private temp directory for as long as a closure runs, then
//! unmounted, its directory removed and the snapshot removed again. The caller makes it
//! under a lease, so a view left behind by a crash is collected with the lease.

use std::path::Path;

use berth_client::Api;
use berth_proto::containerd::services::snapshots::v1::{
    RemoveSnapshotRequest, ViewSnapshotRequest,
};
use berth_proto::containerd::types::Mount as WireMount;
use berth_snapshot::MountGuard;
use rand::Rng;

/// Why the image's root filesystem could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The daemon refused the view or its removal.
    #[error("{action}: {}", .status.message())]
    Rpc {
        /// What was being done.
        action: String,
        /// The daemon's answer (boxed: a status is large).
        status: Box<tonic::Status>,
    },
    /// The view could not be mounted (berthctl must run as root, on the daemon's host).
    #[error("mounting the image's root filesystem: {0}")]
    Mount(#[from] berth_snapshot::Error),
    /// The temp directory for the mount could not be made.
    #[error("making a directory to mount the image on: {0}")]
    TempDir(std::io::Error),
}

/// A fresh snapshot key for a view: `berthctl-view-<16 hex digits>`.
fn view_key() -> String {
    format!("berthctl-view-{:016x}", rand::thread_rng().gen::<u64>())
}

/// The snapshotter's mounts as the mount code takes them, each made read-only.
fn read_only(mounts: Vec<WireMount>) -> Vec<berth_snapshot::Mount> {
    mounts
        .into_iter()
        .map(|m| {
            let mut options = m.options;
            if !options.iter().any(|o| o == "ro") {
                options.push("ro".to_string());
            }
            berth_snapshot::Mount {
                kind: m.r#type,
                source: m.source,
                options,
            }
        })
        .collect()
}

/// Runs `look` with the root filesystem of the snapshot `parent` (an image's top chain
/// ID in `snapshotter`) mounted read-only, and cleans up afterwards whatever `look`
/// returned: unmount, remove the directory, remove the view snapshot.
pub async fn with_image_rootfs<T>(
    api: &Api,
    snapshotter: &str,
    parent: &str,
    look: impl FnOnce(&Path) -> T,
) -> Result<T, ViewError> {
    let key = view_key();
    let mounts = api
        .snapshots()
        .view(ViewSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
            parent: parent.to_string(),
            labels: Default::default(),
        })
        .await
        .map_err(|status| ViewError::Rpc {
            action: format!("making a view of snapshot {parent}"),
            status: Box::new(status),
        })?
        .into_inner()
        .mounts;
    let looked = mount_and_look(read_only(mounts), look);
    let removed = api
        .snapshots()
        .remove(RemoveSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
        })
        .await
        .map_err(|status| ViewError::Rpc {
            action: format!("removing the view snapshot {key}"),
            status: Box::new(status),
        });
    let value = looked?;
    removed?;
    Ok(value)
}

/// Runs `look` with the snapshot behind `mounts` (a container's freshly prepared snapshot,
/// which holds exactly its image's files) mounted read-only, then unmounts it.
///
/// For a new container this saves the View and Remove calls of [`with_image_rootfs`] (and
/// the daemon's directory sync for the view). A read-only mount is also unmounted without
/// the flush a writable overlay costs.
pub fn with_prepared_rootfs<T>(
    mounts: Vec<WireMount>,
    look: impl FnOnce(&Path) -> T,
) -> Result<T, ViewError> {
    mount_and_look(read_only(mounts), look)
}

/// Mounts `mounts` on a new temp directory, runs `look` on it, and unmounts and removes
/// the directory on every way out (the guard is dropped before the directory).
fn mount_and_look<T>(
    mounts: Vec<berth_snapshot::Mount>,
    look: impl FnOnce(&Path) -> T,
) -> Result<T, ViewError> {
    let dir = tempfile::Builder::new()
        .prefix("berthctl-rootfs-")
        .tempdir()
        .map_err(ViewError::TempDir)?;
    let guard = MountGuard::mount_all(&mounts, dir.path())?;
    let value = look(dir.path());
    guard.unmount()?;
    drop(dir);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_keys_are_valid_identifiers_and_unique() {
        let a = view_key();
        let b = view_key();
        assert_ne!(a, b);
        assert!(a.starts_with("berthctl-view-") && a.len() == "berthctl-view-".len() + 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn every_mount_is_made_read_only_once() {
        let mounts = read_only(vec![
            WireMount {
                r#type: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec!["lowerdir=/a:/b".into()],
            },
            WireMount {
                r#type: "bind".into(),
                source: "/a".into(),
                target: String::new(),
                options: vec!["rbind".into(), "ro".into()],
            },
        ]);
        assert_eq!(mounts[0].options, ["lowerdir=/a:/b", "ro"]);
        assert_eq!(mounts[1].options, ["rbind", "ro"]);
        assert_eq!(mounts[0].kind, "overlay");
    }

    #[test]
    fn a_mounted_view_is_seen_read_only_and_undone() {
        // A read-only bind of a real directory stands in for a snapshot's mounts.
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("etc")).unwrap();
        std::fs::write(source.path().join("etc/passwd"), "app:x:7:7::/:/bin/sh\n").unwrap();
        let mounts = read_only(vec![WireMount {
            r#type: "bind".into(),
            source: source.path().to_str().unwrap().into(),
            target: String::new(),
            options: vec!["rbind".into()],
        }]);
        let mut seen_at = None;
        let (text, write_failed) = mount_and_look(mounts, |root| {
            seen_at = Some(root.to_path_buf());
            (
                std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
                std::fs::write(root.join("etc/new"), "x").is_err(),
            )
        })
        .unwrap();
        assert_eq!(text, "app:x:7:7::/:/bin/sh\n");
        assert!(write_failed, "the view was writable");
        assert!(!source.path().join("etc/new").exists());
        let seen_at = seen_at.unwrap();
        assert!(!seen_at.exists(), "the mount directory was left behind");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(seen_at.to_str().unwrap()));
    }
}
