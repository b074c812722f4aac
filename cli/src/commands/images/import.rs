//! `berthctl images import`: images from an OCI image layout or `docker save` tar.

use std::path::PathBuf;

use berth_client::archive::{import, ImportOptions};
use berth_client::image::ImageRecord;
use berth_client::progress::Progress;

use crate::commands::images::platform_arg;
use crate::commands::snapshots::DEFAULT_SNAPSHOTTER;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, Format};
use crate::progress_display::ProgressDisplay;

/// Options of `images import`, named as ctr names them.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Name images whose archive entry carries only a tag `<base-name>:<tag>`, and
    /// import only images named under it.
    #[arg(long)]
    base_name: Option<String>,
    /// Also keep the archive's whole index under this name.
    #[arg(long)]
    index_name: Option<String>,
    /// Import the content of every platform, not only this host's.
    #[arg(long)]
    all_platforms: bool,
    /// Import (and unpack) for this platform instead of this host's.
    #[arg(long)]
    platform: Option<String>,
    /// Store the content without unpacking it into snapshots.
    #[arg(long)]
    no_unpack: bool,
    /// The snapshotter to unpack into.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// The archive (`-` reads stdin).
    input: PathBuf,
}

/// Imports the archive and prints each image made.
pub async fn run(context: &Context, args: ImportArgs) -> Result<(), CliError> {
    let platform = platform_arg(args.platform.as_deref())?;
    let reader: Box<dyn std::io::Read + Send> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.input)
                .map_err(CliError::io(format!("opening {}", args.input.display())))?,
        )
    };
    let api = context.api().await?;
    let (progress, events) = Progress::channel();
    let display = ProgressDisplay::start(events, "importing", context.format);
    let options = ImportOptions {
        base_name: args.base_name,
        index_name: args.index_name,
        all_platforms: args.all_platforms,
        platform,
        snapshotter: args.snapshotter,
        unpack: !args.no_unpack,
        progress,
    };
    let imported = import(&api, reader, &options).await;
    drop(options);
    let totals = display.finish().await;
    let records = imported?;
    match context.format {
        Format::Json => print_json(&records.iter().map(record_json).collect()),
        Format::Table => {
            for record in &records {
                println!("imported {} ({})", record.name, record.target.digest);
            }
            println!("{}", totals.describe());
        }
    }
    Ok(())
}

/// An image record as JSON: name, media type, digest, size of the target.
pub fn record_json(record: &ImageRecord) -> serde_json::Value {
    serde_json::json!({
        "name": record.name,
        "media_type": record.target.media_type,
        "digest": record.target.digest,
        "size": record.target.size,
    })
}
