//! `berthctl images export`: images as an OCI image layout tar that `ctr images import`
//! (or `berthctl images import`) reads.
//!
//! The archive is written to a temporary file next to the output and renamed into place
//! only once complete, so a failed export leaves nothing that looks like an archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_client::archive::{export, ExportOptions};
use berth_client::platform::PlatformSelection;
use berth_client::progress::Progress;

use crate::commands::images::platform_arg;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{human_size, print_json, Format};
use crate::progress_display::ProgressDisplay;

/// Options of `images export`, named as ctr names them.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Export the manifests of every platform of an index.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// Export this platform's manifest of an index instead of this host's.
    #[arg(long)]
    platform: Option<String>,
    /// The archive to write (`-` writes stdout).
    output: PathBuf,
    /// The images to put in it.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Writes the archive and prints what went into it.
pub async fn run(context: &Context, args: ExportArgs) -> Result<(), CliError> {
    let platforms = if args.all_platforms {
        PlatformSelection::All
    } else {
        PlatformSelection::Only(platform_arg(args.platform.as_deref())?)
    };
    let api = context.api().await?;
    if args.output.as_os_str() == "-" {
        // stdout carries the archive: no display, no summary.
        let options = ExportOptions {
            platforms,
            progress: Progress::none(),
        };
        export(&api, &args.names, std::io::stdout(), &options).await?;
        return std::io::stdout()
            .flush()
            .map_err(CliError::io("writing the archive to stdout"));
    }
    let (file, temporary) = temporary_beside(&args.output)?;
    let (progress, events) = Progress::channel();
    let display = ProgressDisplay::start(events, "exporting", context.format);
    let options = ExportOptions {
        platforms,
        progress,
    };
    let exported = export(&api, &args.names, file, &options).await;
    drop(options);
    let totals = display.finish().await;
    let summary = exported?;
    // Temporary files are private; an archive is as readable as any file made here.
    std::fs::set_permissions(
        &temporary,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(CliError::io(format!("writing {}", args.output.display())))?;
    temporary
        .persist(&args.output)
        .map_err(|e| CliError::io(format!("writing {}", args.output.display()))(e.error))?;
    match context.format {
        Format::Json => print_json(&serde_json::json!({
            "output": args.output,
            "images": args.names,
            "blobs": summary.blobs,
            "blob_bytes": summary.blob_bytes,
        })),
        Format::Table => println!(
            "exported {} to {}: {} blobs, {} in {:.1} s",
            args.names.join(", "),
            args.output.display(),
            summary.blobs,
            human_size(summary.blob_bytes),
            totals.elapsed.as_secs_f64()
        ),
    }
    Ok(())
}

/// A new temporary file in the output's directory (so the final rename stays on one
/// filesystem) and the handle that renames it into place or, dropped, removes it.
fn temporary_beside(output: &Path) -> Result<(std::fs::File, tempfile::TempPath), CliError> {
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let named = tempfile::Builder::new()
        .prefix(".berthctl-export-")
        .tempfile_in(dir)
        .map_err(CliError::io(format!(
            "creating a temporary file in {}",
            dir.display()
        )))?;
    let (file, path) = named.into_parts();
    Ok((file, path))
}
