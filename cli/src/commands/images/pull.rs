//! `berthctl images pull` (fetch and unpack) and `berthctl content fetch` (fetch only):
//! an image from a registry into the store, with the live progress table.

use berth_client::progress::Progress;
use berth_client::pull::{pull, PullOptions, PullOutcome, DEFAULT_CONCURRENT_FETCHES};

use crate::commands::images::platform_arg;
use crate::commands::images::registry_args::RegistryArgs;
use crate::commands::snapshots::DEFAULT_SNAPSHOTTER;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, Format};
use crate::progress_display::{ProgressDisplay, Totals};

/// Options of `images pull`, named as ctr names them.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Pull this platform's manifest instead of this host's (e.g. linux/arm64).
    #[arg(long)]
    platform: Option<String>,
    /// Pull the manifests of every platform (only the host's, or --platform's, is unpacked).
    #[arg(long)]
    all_platforms: bool,
    /// Store the content without unpacking it into snapshots.
    #[arg(long)]
    no_unpack: bool,
    /// The snapshotter to unpack into.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// Most layers downloaded at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENT_FETCHES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    max_concurrent_downloads: usize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image, `[registry/]repository[:tag][@digest]`.
    reference: String,
}

/// Options of `content fetch`: a pull that stops before unpacking.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Fetch this platform's manifest instead of this host's.
    #[arg(long)]
    platform: Option<String>,
    /// Fetch the manifests of every platform.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// Most layers downloaded at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENT_FETCHES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    max_concurrent_downloads: usize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image, `[registry/]repository[:tag][@digest]`.
    reference: String,
}

/// Pulls and unpacks the image, then prints what was done.
pub async fn run(context: &Context, args: PullArgs) -> Result<(), CliError> {
    let options = PullOptions {
        platform: platform_arg(args.platform.as_deref())?,
        all_platforms: args.all_platforms,
        unpack: !args.no_unpack,
        snapshotter: args.snapshotter,
        max_concurrent: args.max_concurrent_downloads,
        registry: args.registry.options(&args.reference)?,
        progress: Progress::none(),
    };
    transfer(context, &args.reference, options).await
}

/// Fetches the image's content (and names it) without unpacking.
pub async fn fetch(context: &Context, args: FetchArgs) -> Result<(), CliError> {
    let options = PullOptions {
        platform: platform_arg(args.platform.as_deref())?,
        all_platforms: args.all_platforms,
        unpack: false,
        snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
        max_concurrent: args.max_concurrent_downloads,
        registry: args.registry.options(&args.reference)?,
        progress: Progress::none(),
    };
    transfer(context, &args.reference, options).await
}

async fn transfer(
    context: &Context,
    reference: &str,
    mut options: PullOptions,
) -> Result<(), CliError> {
    let api = context.api().await?;
    let (progress, events) = Progress::channel();
    options.progress = progress;
    let display = ProgressDisplay::start(events, "downloading", context.format);
    let pulled = pull(&api, reference, &options).await;
    drop(options);
    let totals = display.finish().await;
    let outcome = pulled?;
    print_outcome(context.format, &outcome, &totals);
    Ok(())
}

fn print_outcome(format: Format, outcome: &PullOutcome, totals: &Totals) {
    let image = &outcome.image;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "name": image.name,
            "media_type": image.target.media_type,
            "digest": image.target.digest,
            "bytes_fetched": outcome.bytes_fetched(),
            "blobs": outcome.transfers.len(),
            "unpacked": outcome.unpacked.as_ref().map(|u| serde_json::json!({
                "top_chain_id": u.top_chain_id,
                "applied": u.applied,
                "already_unpacked": u.already_unpacked,
                "unpacked_by_other": u.unpacked_by_other,
            })),
            "elapsed_seconds": totals.elapsed.as_secs_f64(),
        })),
        Format::Table => {
            println!("pulled {} ({})", image.name, image.target.digest);
            println!("{}", totals.describe());
        }
    }
}
