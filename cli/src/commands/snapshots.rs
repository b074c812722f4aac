//! `berthctl snapshots ls|tree|prepare|view|mounts|commit|rm|usage|info|label`: the
//! snapshotter's filesystems, by key.

use std::collections::{BTreeMap, HashMap};

use berth_proto::containerd::services::snapshots::v1::{
    CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use berth_proto::containerd::types::Mount;
use futures::StreamExt;

use crate::arg_values::{label_update, parse_labels};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{human_size, labels_json, print_json, timestamp_text, Format, Table};

/// The snapshotter used when none is named.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// `snapshots` with the snapshotter it works on.
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// The snapshotter to work on.
    #[arg(long, global = true, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    #[command(subcommand)]
    command: SnapshotsCommand,
}

/// The `snapshots` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotsCommand {
    /// List snapshots: key, parent, kind.
    #[command(alias = "list")]
    Ls {
        /// Filters such as `parent==<key>` or `kind==committed` (any may match).
        filters: Vec<String>,
    },
    /// Show snapshots as a tree of parents and children.
    Tree,
    /// Create an active (writable) snapshot on top of an optional parent.
    Prepare(CreateArgs),
    /// Create a read-only view of a committed snapshot.
    View(CreateArgs),
    /// Print the mount commands that mount snapshot <key> on <target>.
    Mounts {
        /// Where the snapshot would be mounted.
        target: String,
        /// The snapshot's key.
        key: String,
    },
    /// Commit active snapshot <active> as the committed snapshot <key>.
    Commit {
        /// The committed snapshot's key.
        key: String,
        /// The active snapshot to commit.
        active: String,
    },
    /// Remove snapshots (children first).
    #[command(aliases = ["remove", "delete", "del"])]
    Rm {
        /// The snapshots' keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Disk usage of snapshots (all of them when no key is given).
    Usage {
        /// Print sizes in bytes.
        #[arg(short = 'b')]
        bytes: bool,
        /// The snapshots' keys.
        keys: Vec<String>,
    },
    /// Everything known about one snapshot, as JSON.
    Info {
        /// The snapshot's key.
        key: String,
    },
    /// Set labels of a snapshot (key= clears one).
    Label {
        /// The snapshot's key.
        key: String,
        /// Labels as key=value; an empty value removes the label.
        labels: Vec<String>,
    },
}

/// Options of `snapshots prepare` and `snapshots view`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Print the mount commands for mounting the new snapshot on this path.
    #[arg(long, short)]
    target: Option<String>,
    /// Print the new snapshot's mounts as JSON.
    #[arg(long)]
    mounts: bool,
    /// Labels as key=value.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The new snapshot's key.
    key: String,
    /// The committed snapshot it starts from.
    parent: Option<String>,
}

/// Runs one `snapshots` subcommand.
pub async fn run(context: &Context, args: SnapshotsArgs) -> Result<(), CliError> {
    let snapshotter = args.snapshotter;
    let api = context.api().await?;
    let mut client = api.snapshots();
    match args.command {
        SnapshotsCommand::Ls { filters } => {
            let infos = list_all(context, &snapshotter, filters).await?;
            match context.format {
                Format::Json => print_json(&infos.iter().map(info_json).collect()),
                Format::Table => {
                    let mut table = Table::new(&["KEY", "PARENT", "KIND"]);
                    for info in &infos {
                        table.row(vec![
                            info.name.clone(),
                            info.parent.clone(),
                            kind_text(info.kind()).to_string(),
                        ]);
                    }
                    table.print();
                }
            }
        }
        SnapshotsCommand::Tree => {
            let infos = list_all(context, &snapshotter, Vec::new()).await?;
            match context.format {
                Format::Json => print_json(&tree_json(&infos)),
                Format::Table => {
                    for line in tree_lines(&infos) {
                        println!("{line}");
                    }
                }
            }
        }
        SnapshotsCommand::Prepare(create) => {
            let labels = parse_labels(&create.labels)?;
            let mounts = client
                .prepare(PrepareSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: create.key.clone(),
                    parent: create.parent.clone().unwrap_or_default(),
                    labels,
                })
                .await
                .map_err(CliError::rpc(format!("preparing snapshot {}", create.key)))?
                .into_inner()
                .mounts;
            print_created(&create, &mounts);
        }
        SnapshotsCommand::View(create) => {
            let labels = parse_labels(&create.labels)?;
            let mounts = client
                .view(ViewSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: create.key.clone(),
                    parent: create.parent.clone().unwrap_or_default(),
                    labels,
                })
                .await
                .map_err(CliError::rpc(format!("creating view {}", create.key)))?
                .into_inner()
                .mounts;
            print_created(&create, &mounts);
        }
        SnapshotsCommand::Mounts { target, key } => {
            let mounts = client
                .mounts(MountsRequest {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                })
                .await
                .map_err(CliError::rpc(format!(
                    "reading the mounts of snapshot {key}"
                )))?
                .into_inner()
                .mounts;
            match context.format {
                Format::Json => print_json(&mounts_json(&mounts)),
                Format::Table => {
                    for mount in &mounts {
                        println!("{}", mount_command(mount, &target));
                    }
                }
            }
        }
        SnapshotsCommand::Commit { key, active } => {
            client
                .commit(CommitSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    name: key.clone(),
                    key: active.clone(),
                    labels: HashMap::new(),
                })
                .await
                .map_err(CliError::rpc(format!("committing {active} as {key}")))?;
        }
        SnapshotsCommand::Rm { keys } => {
            let mut failures = Vec::new();
            for key in keys {
                let removed = client
                    .remove(RemoveSnapshotRequest {
                        snapshotter: snapshotter.clone(),
                        key: key.clone(),
                    })
                    .await;
                if let Err(status) = removed {
                    failures.push(CliError::rpc(format!("removing snapshot {key}"))(status));
                }
            }
            CliError::from_failures(failures)?;
        }
        SnapshotsCommand::Usage { bytes, keys } => {
            let keys = if keys.is_empty() {
                list_all(context, &snapshotter, Vec::new())
                    .await?
                    .into_iter()
                    .map(|info| info.name)
                    .collect()
            } else {
                keys
            };
            let mut rows = Vec::new();
            for key in keys {
                let usage = client
                    .usage(UsageRequest {
                        snapshotter: snapshotter.clone(),
                        key: key.clone(),
                    })
                    .await
                    .map_err(CliError::rpc(format!(
                        "reading the usage of snapshot {key}"
                    )))?
                    .into_inner();
                rows.push((key, usage.size.max(0) as u64, usage.inodes));
            }
            match context.format {
                Format::Json => print_json(
                    &rows
                        .iter()
                        .map(|(key, size, inodes)| {
                            serde_json::json!({"key": key, "size": size, "inodes": inodes})
                        })
                        .collect(),
                ),
                Format::Table => {
                    let mut table = Table::new(&["KEY", "SIZE", "INODES"]);
                    for (key, size, inodes) in rows {
                        let size = if bytes {
                            size.to_string()
                        } else {
                            human_size(size)
                        };
                        table.row(vec![key, size, inodes.to_string()]);
                    }
                    table.print();
                }
            }
        }
        SnapshotsCommand::Info { key } => {
            let info = client
                .stat(StatSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                })
                .await
                .map_err(CliError::rpc(format!("reading snapshot {key}")))?
                .into_inner()
                .info
                .unwrap_or_default();
            print_json(&info_json(&info));
        }
        SnapshotsCommand::Label { key, labels } => {
            let (labels, paths) = label_update(parse_labels(&labels)?);
            let info = client
                .update(UpdateSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    info: Some(Info {
                        name: key.clone(),
                        labels,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await
                .map_err(CliError::rpc(format!("labelling snapshot {key}")))?
                .into_inner()
                .info
                .unwrap_or_default();
            match context.format {
                Format::Json => print_json(&info_json(&info)),
                Format::Table => {
                    let mut pairs: Vec<_> = info.labels.iter().collect();
                    pairs.sort();
                    for (key, value) in pairs {
                        println!("{key}={value}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every snapshot of `snapshotter` that passes `filters`, sorted by key.
async fn list_all(
    context: &Context,
    snapshotter: &str,
    filters: Vec<String>,
) -> Result<Vec<Info>, CliError> {
    let api = context.api().await?;
    let mut stream = api
        .snapshots()
        .list(ListSnapshotsRequest {
            snapshotter: snapshotter.to_string(),
            filters,
        })
        .await
        .map_err(CliError::rpc("listing snapshots"))?
        .into_inner();
    let mut infos = Vec::new();
    while let Some(reply) = stream.next().await {
        infos.extend(reply.map_err(CliError::rpc("listing snapshots"))?.info);
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// After `prepare`/`view`: the mount commands for `--target`, the mounts as JSON for
/// `--mounts`, nothing otherwise.
fn print_created(create: &CreateArgs, mounts: &[Mount]) {
    if let Some(target) = &create.target {
        for mount in mounts {
            println!("{}", mount_command(mount, target));
        }
    }
    if create.mounts {
        print_json(&mounts_json(mounts));
    }
}

/// The shell command that performs `mount` on `target`:
/// `mount -t <type> <source> <target> [-o <options>]`.
pub fn mount_command(mount: &Mount, target: &str) -> String {
    let mut command = format!("mount -t {} {} {}", mount.r#type, mount.source, target);
    if !mount.options.is_empty() {
        command.push_str(" -o ");
        command.push_str(&mount.options.join(","));
    }
    command
}

/// Mounts as a JSON array of `{type, source, options}`.
pub fn mounts_json(mounts: &[Mount]) -> serde_json::Value {
    mounts
        .iter()
        .map(|m| serde_json::json!({"type": m.r#type, "source": m.source, "options": m.options}))
        .collect()
}

/// `Committed`, `Active` or `View`, as ctr names the kinds.
fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Committed => "Committed",
        Kind::Active => "Active",
        Kind::View => "View",
        Kind::Unknown => "Unknown",
    }
}

fn info_json(info: &Info) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "parent": info.parent,
        "kind": kind_text(info.kind()),
        "created_at": timestamp_text(info.created_at.as_ref()),
        "updated_at": timestamp_text(info.updated_at.as_ref()),
        "labels": labels_json(&info.labels),
    })
}

/// Children of each parent key (roots under ""), each list sorted.
fn children_by_parent(infos: &[Info]) -> BTreeMap<&str, Vec<&str>> {
    let known: std::collections::HashSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for info in infos {
        // A parent that is not listed (another snapshotter's, or removed) makes a root.
        let parent = if known.contains(info.parent.as_str()) {
            info.parent.as_str()
        } else {
            ""
        };
        children.entry(parent).or_default().push(info.name.as_str());
    }
    for list in children.values_mut() {
        list.sort_unstable();
    }
    children
}

/// The tree as lines: roots flush left, each child two spaces deeper behind `\_ `.
fn tree_lines(infos: &[Info]) -> Vec<String> {
    let children = children_by_parent(infos);
    let mut lines = Vec::new();
    let mut stack: Vec<(&str, usize)> = children
        .get("")
        .map(|roots| roots.iter().rev().map(|r| (*r, 0)).collect())
        .unwrap_or_default();
    while let Some((name, depth)) = stack.pop() {
        if depth == 0 {
            lines.push(name.to_string());
        } else {
            lines.push(format!("{}\\_ {name}", "  ".repeat(depth)));
        }
        if let Some(kids) = children.get(name) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    lines
}

/// The tree as nested JSON objects `{name, kind, children: [...]}`.
fn tree_json(infos: &[Info]) -> serde_json::Value {
    fn node(
        name: &str,
        by_name: &HashMap<&str, &Info>,
        children: &BTreeMap<&str, Vec<&str>>,
    ) -> serde_json::Value {
        let kind = by_name.get(name).map(|i| kind_text(i.kind())).unwrap_or("");
        let kids: Vec<serde_json::Value> = children
            .get(name)
            .map(|list| list.iter().map(|k| node(k, by_name, children)).collect())
            .unwrap_or_default();
        serde_json::json!({"name": name, "kind": kind, "children": kids})
    }
    let by_name: HashMap<&str, &Info> = infos.iter().map(|i| (i.name.as_str(), i)).collect();
    let children = children_by_parent(infos);
    children
        .get("")
        .map(|roots| roots.iter().map(|r| node(r, &by_name, &children)).collect())
        .unwrap_or_else(|| serde_json::json!([]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parent: &str) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind: Kind::Committed as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_tree_nests_children_under_parents() {
        let infos = vec![
            info("c2", "c1"),
            info("c1", ""),
            info("work", "c2"),
            info("other", ""),
            info("orphan", "gone"),
        ];
        assert_eq!(
            tree_lines(&infos),
            vec!["c1", "  \\_ c2", "    \\_ work", "orphan", "other"]
        );
        let json = tree_json(&infos);
        assert_eq!(json[0]["name"], "c1");
        assert_eq!(json[0]["children"][0]["children"][0]["name"], "work");
    }

    #[test]
    fn mount_commands_read_like_ctr() {
        let mount = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec!["lowerdir=/a:/b".into(), "upperdir=/u".into()],
        };
        assert_eq!(
            mount_command(&mount, "/mnt"),
            "mount -t overlay overlay /mnt -o lowerdir=/a:/b,upperdir=/u"
        );
        let bare = Mount {
            options: vec![],
            ..mount
        };
        assert_eq!(
            mount_command(&bare, "/mnt"),
            "mount -t overlay overlay /mnt"
        );
    }
}
