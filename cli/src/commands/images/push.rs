//! `berthctl images push`: an image from the store to a registry.

use berth_client::progress::Progress;
use berth_client::pull::DEFAULT_CONCURRENT_FETCHES;
use berth_client::push::{push, PushOptions};

use crate::commands::images::platform_arg;
use crate::commands::images::registry_args::RegistryArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, Format};
use crate::progress_display::ProgressDisplay;

/// Options of `images push`, named as ctr names them.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Push this platform's manifest when the local index is not complete.
    #[arg(long)]
    platform: Option<String>,
    /// Push every platform's manifest (all must be in the store).
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// Most blobs uploaded at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENT_FETCHES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    max_concurrent_uploaded_layers: usize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Where to push: `registry/repository:tag`.
    remote: String,
    /// The local image to push (default: the same name as the remote).
    local: Option<String>,
}

/// Pushes the image and prints where it went.
pub async fn run(context: &Context, args: PushArgs) -> Result<(), CliError> {
    let local = args.local.clone().unwrap_or_else(|| args.remote.clone());
    let mut options = PushOptions {
        platform: platform_arg(args.platform.as_deref())?,
        all_platforms: args.all_platforms,
        max_concurrent: args.max_concurrent_uploaded_layers,
        registry: args.registry.options(&args.remote)?,
        progress: Progress::none(),
    };
    let api = context.api().await?;
    let (progress, events) = Progress::channel();
    options.progress = progress;
    let display = ProgressDisplay::start(events, "uploading", context.format);
    let pushed = push(&api, &local, &args.remote, &options).await;
    drop(options);
    let totals = display.finish().await;
    let outcome = pushed?;
    match context.format {
        Format::Json => print_json(&serde_json::json!({
            "remote": args.remote,
            "local": local,
            "media_type": outcome.target.media_type,
            "digest": outcome.target.digest,
            "uploaded": outcome.uploaded,
            "already_there": outcome.already_there,
            "elapsed_seconds": totals.elapsed.as_secs_f64(),
        })),
        Format::Table => {
            println!("pushed {} ({})", args.remote, outcome.target.digest);
            println!(
                "{} blobs uploaded, {} already there; {}",
                outcome.uploaded.len(),
                outcome.already_there.len(),
                totals.describe()
            );
        }
    }
    Ok(())
}
