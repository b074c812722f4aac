//! The mounts a client is given for a snapshot, shaped as containerd's overlayfs
//! snapshotter shapes them (clients such as `ctr` print and perform them as they are).

use super::layout::Layout;
use super::record::Kind;
use crate::mount::Mount;

/// Builds the mounts for snapshot `id` of `kind`, whose committed ancestors have the ids
/// `parent_ids`, closest parent first. `index_off` adds `index=off` to overlays (set when
/// the kernel's overlay module has the index feature, so overlays of shared lower layers
/// do not trip over each other's index).
///
/// - no parent: a bind mount of the snapshot's own directory (`rw` or `ro`);
/// - a view of exactly one parent: a read-only bind mount of the parent's directory;
/// - an active snapshot: an overlay with `workdir`, `upperdir` and all parents as `lowerdir`;
/// - a view of several parents: an overlay with only `lowerdir` (read-only by nature).
pub(crate) fn snapshot_mounts(
    layout: &Layout,
    id: u64,
    kind: Kind,
    parent_ids: &[u64],
    index_off: bool,
) -> Vec<Mount> {
    let read_write = if kind == Kind::Active { "rw" } else { "ro" };
    let bind = |dir: std::path::PathBuf, mode: &str| Mount {
        kind: "bind".to_string(),
        source: dir.to_string_lossy().into_owned(),
        options: vec![mode.to_string(), "rbind".to_string()],
    };
    match (kind, parent_ids) {
        (_, []) => return vec![bind(layout.fs_dir(id), read_write)],
        (Kind::View, [only]) => return vec![bind(layout.fs_dir(*only), "ro")],
        _ => {}
    }
    let mut options = Vec::new();
    if index_off {
        options.push("index=off".to_string());
    }
    if kind == Kind::Active {
        options.push(format!("workdir={}", layout.work_dir(id).display()));
        options.push(format!("upperdir={}", layout.fs_dir(id).display()));
    }
    let lowers: Vec<String> = parent_ids
        .iter()
        .map(|parent| layout.fs_dir(*parent).to_string_lossy().into_owned())
        .collect();
    options.push(format!("lowerdir={}", lowers.join(":")));
    vec![Mount {
        kind: "overlay".to_string(),
        source: "overlay".to_string(),
        options,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn layout() -> Layout {
        Layout::new(PathBuf::from("/r"))
    }

    fn opts(mounts: &[Mount]) -> Vec<&str> {
        mounts[0].options.iter().map(String::as_str).collect()
    }

    #[test]
    fn no_parent_is_a_bind_mount_of_its_own_directory() {
        let mounts = snapshot_mounts(&layout(), 4, Kind::Active, &[], true);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].kind, "bind");
        assert_eq!(mounts[0].source, "/r/snapshots/4/fs");
        assert_eq!(opts(&mounts), ["rw", "rbind"]);
        let view = snapshot_mounts(&layout(), 4, Kind::View, &[], true);
        assert_eq!(opts(&view), ["ro", "rbind"]);
    }

    #[test]
    fn active_with_parents_is_an_overlay_closest_parent_first() {
        let mounts = snapshot_mounts(&layout(), 9, Kind::Active, &[8, 3], true);
        assert_eq!(mounts[0].kind, "overlay");
        assert_eq!(mounts[0].source, "overlay");
        assert_eq!(
            opts(&mounts),
            [
                "index=off",
                "workdir=/r/snapshots/9/work",
                "upperdir=/r/snapshots/9/fs",
                "lowerdir=/r/snapshots/8/fs:/r/snapshots/3/fs",
            ]
        );
        let without_index = snapshot_mounts(&layout(), 9, Kind::Active, &[8], false);
        assert!(!opts(&without_index).contains(&"index=off"));
    }

    #[test]
    fn views_bind_one_parent_or_overlay_several() {
        let one = snapshot_mounts(&layout(), 9, Kind::View, &[8], true);
        assert_eq!(one[0].kind, "bind");
        assert_eq!(one[0].source, "/r/snapshots/8/fs");
        assert_eq!(opts(&one), ["ro", "rbind"]);

        let two = snapshot_mounts(&layout(), 9, Kind::View, &[8, 3], true);
        assert_eq!(two[0].kind, "overlay");
        assert_eq!(
            opts(&two),
            ["index=off", "lowerdir=/r/snapshots/8/fs:/r/snapshots/3/fs"]
        );
    }
}
