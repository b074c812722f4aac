//! `berthctl images mount|unmount`: an image's filesystem on a directory of this node,
//! for looking inside it.
//!
//! The snapshot is named by the target's absolute path, so `unmount <target>` finds it
//! again. It carries a garbage-collection root label, so it stays until `unmount --rm`
//! (or `snapshots rm`) removes it, as a snapshot made by `snapshots prepare` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_client::image::{is_unpacked, resolve_named_image};
use berth_client::progress::Progress;
use berth_client::unpack::unpack_image;
use berth_proto::containerd::services::snapshots::v1::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, ViewSnapshotRequest,
};

use crate::commands::images::platform_arg;
use crate::commands::snapshots::DEFAULT_SNAPSHOTTER;
use crate::context::Context;
use crate::error::CliError;
use crate::output::rfc3339;

/// Label that keeps a snapshot from garbage collection.
const GC_ROOT_LABEL: &str = "containerd.io/gc.root";

/// Options of `images mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The snapshotter to unpack into and mount from.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// The platform of the image to mount (default: this host's).
    #[arg(long)]
    platform: Option<String>,
    /// Mount writable (changes stay in the snapshot); read-only by default.
    #[arg(long)]
    rw: bool,
    /// The image.
    name: String,
    /// An existing directory to mount it on.
    target: PathBuf,
}

/// Options of `images unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The snapshotter the image was mounted from.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// Also remove the snapshot (and with it, for `--rw`, the changes made).
    #[arg(long)]
    rm: bool,
    /// The directory the image is mounted on.
    target: PathBuf,
}

/// Unpacks the image if needed, creates its snapshot under the target's path and mounts
/// it there; prints the target. Nothing is left behind if a step fails.
pub async fn mount(context: &Context, args: MountArgs) -> Result<(), CliError> {
    let target = absolute_dir(&args.target)?;
    let key = snapshot_key(&target)?;
    let platform = platform_arg(args.platform.as_deref())?;
    let api = context.api().await?;
    let (_, image) = resolve_named_image(&api, &args.name, &platform).await?;
    if !is_unpacked(&api, &image, &args.snapshotter).await? {
        unpack_image(&api, &image, &args.snapshotter, &Progress::none()).await?;
    }
    let parent = image.top_chain_id().unwrap_or_default();
    let labels = HashMap::from([(GC_ROOT_LABEL.to_string(), now_text())]);
    let mut snapshots = api.snapshots();
    let what = format!("creating snapshot {key} of image {}", args.name);
    let mounts = if args.rw {
        snapshots
            .prepare(PrepareSnapshotRequest {
                snapshotter: args.snapshotter.clone(),
                key: key.clone(),
                parent,
                labels,
            })
            .await
            .map_err(CliError::rpc(what))?
            .into_inner()
            .mounts
    } else {
        snapshots
            .view(ViewSnapshotRequest {
                snapshotter: args.snapshotter.clone(),
                key: key.clone(),
                parent,
                labels,
            })
            .await
            .map_err(CliError::rpc(what))?
            .into_inner()
            .mounts
    };
    let mounts: Vec<berth_snapshot::mount::Mount> = mounts
        .into_iter()
        .map(|m| berth_snapshot::mount::Mount {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect();
    if let Err(e) = berth_snapshot::mount::mount_all(&mounts, &target) {
        // Do not leave a snapshot nobody mounted.
        let _ = snapshots
            .remove(RemoveSnapshotRequest {
                snapshotter: args.snapshotter.clone(),
                key: key.clone(),
            })
            .await;
        return Err(CliError::Failed(format!(
            "mounting image {} on {}: {e}",
            args.name,
            target.display()
        )));
    }
    println!("{}", target.display());
    Ok(())
}

/// Unmounts the target and, with `--rm`, removes its snapshot; prints the target.
pub async fn unmount(context: &Context, args: UnmountArgs) -> Result<(), CliError> {
    let target = absolute_dir(&args.target)?;
    let key = snapshot_key(&target)?;
    // Connect first: an unreachable daemon should change nothing.
    let api = context.api().await?;
    if is_mount_point(&target)? {
        berth_snapshot::mount::unmount_all(&target)
            .map_err(|e| CliError::Failed(format!("unmounting {}: {e}", target.display())))?;
    } else if !args.rm {
        return Err(CliError::Failed(format!(
            "{} is not a mount point",
            target.display()
        )));
    }
    if args.rm {
        api.snapshots()
            .remove(RemoveSnapshotRequest {
                snapshotter: args.snapshotter,
                key: key.clone(),
            })
            .await
            .map_err(CliError::rpc(format!("removing snapshot {key}")))?;
    }
    println!("{}", target.display());
    Ok(())
}

/// The target as an absolute path without `..` or symlinks; it must be a directory.
fn absolute_dir(target: &Path) -> Result<PathBuf, CliError> {
    let path = std::fs::canonicalize(target)
        .map_err(CliError::io(format!("mount target {}", target.display())))?;
    if !path.is_dir() {
        return Err(CliError::Usage(format!(
            "mount target {} is not a directory",
            target.display()
        )));
    }
    Ok(path)
}

/// The snapshot key for a target directory: its absolute path.
fn snapshot_key(target: &Path) -> Result<String, CliError> {
    target
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::Usage(format!("mount target {target:?} is not UTF-8")))
}

/// Whether something is mounted on `path` (per /proc/self/mountinfo).
fn is_mount_point(path: &Path) -> Result<bool, CliError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(CliError::io("reading /proc/self/mountinfo"))?;
    Ok(mountinfo.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mount_point| Path::new(&unescape_mountinfo(mount_point)) == path)
    }))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(octal, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_text() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\"), r"/odd\");
    }

    #[test]
    fn the_root_directory_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()).unwrap());
    }
}
