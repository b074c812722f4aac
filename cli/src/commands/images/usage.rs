//! `berthctl images usage`: the disk the unpacked layers of an image take.

use berth_client::image::resolve_named_image;
use berth_proto::containerd::services::snapshots::v1::UsageRequest;

use crate::commands::images::platform_arg;
use crate::commands::snapshots::DEFAULT_SNAPSHOTTER;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{human_size, print_json, Format, Table};

/// Options of `images usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// The snapshotter the image is unpacked in.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// The platform of the image to look at (default: this host's).
    #[arg(long)]
    platform: Option<String>,
    /// The image.
    name: String,
}

/// One layer's snapshot: its chain id and usage (`None` when not unpacked).
struct LayerUsage {
    chain_id: String,
    usage: Option<(u64, i64)>,
}

/// Prints each layer's snapshot usage, bottom first, and the total.
pub async fn run(context: &Context, args: UsageArgs) -> Result<(), CliError> {
    let platform = platform_arg(args.platform.as_deref())?;
    let api = context.api().await?;
    let (_, image) = resolve_named_image(&api, &args.name, &platform).await?;
    let mut client = api.snapshots();
    let mut layers = Vec::new();
    for chain_id in image.chain_ids() {
        let usage = match client
            .usage(UsageRequest {
                snapshotter: args.snapshotter.clone(),
                key: chain_id.clone(),
            })
            .await
        {
            Ok(reply) => {
                let reply = reply.into_inner();
                Some((reply.size.max(0) as u64, reply.inodes))
            }
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => {
                return Err(CliError::rpc(format!(
                    "reading the usage of snapshot {chain_id}"
                ))(status))
            }
        };
        layers.push(LayerUsage { chain_id, usage });
    }
    let total: u64 = layers
        .iter()
        .filter_map(|l| l.usage)
        .map(|(size, _)| size)
        .sum();
    let unpacked = layers.iter().all(|l| l.usage.is_some());
    match context.format {
        Format::Json => print_json(&serde_json::json!({
            "name": args.name,
            "snapshotter": args.snapshotter,
            "unpacked": unpacked,
            "size": total,
            "layers": layers.iter().map(|l| serde_json::json!({
                "chain_id": l.chain_id,
                "unpacked": l.usage.is_some(),
                "size": l.usage.map(|(size, _)| size),
                "inodes": l.usage.map(|(_, inodes)| inodes),
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut table = Table::new(&["SNAPSHOT", "SIZE", "INODES"]);
            for layer in &layers {
                let (size, inodes) = match layer.usage {
                    Some((size, inodes)) => (human_size(size), inodes.to_string()),
                    None => ("not unpacked".to_string(), "-".to_string()),
                };
                table.row(vec![layer.chain_id.clone(), size, inodes]);
            }
            table.print();
            println!("total: {}", human_size(total));
        }
    }
    Ok(())
}
