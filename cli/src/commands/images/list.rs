//! `berthctl images ls`: image names with what they point at, their size on this
//! platform and the platforms they hold.

use berth_client::image::read_manifest_and_config;
use berth_client::image::{list_images, resolve_image, select_manifests, ImageRecord};
use berth_client::platform::{Platform, PlatformSelection};
use berth_client::Api;

use crate::context::Context;
use crate::error::CliError;
use crate::output::{human_size, labels_cell, print_json, Format, Table};

/// Options of `images ls`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print only the image names.
    #[arg(long, short)]
    quiet: bool,
    /// Filters such as `name~=busybox` or `labels."k"==v` (any may match).
    filters: Vec<String>,
}

/// One listed image, with what could be read of its content.
struct Listed {
    record: ImageRecord,
    /// Size for the host platform; `None` when its content is not all there.
    size: Option<u64>,
    platforms: Vec<String>,
}

/// Lists the images, sorted by name.
pub async fn run(context: &Context, args: ListArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut records = list_images(&api, &args.filters).await?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet && context.format == Format::Table {
        for record in &records {
            println!("{}", record.name);
        }
        return Ok(());
    }
    let host = Platform::host();
    let mut listed = Vec::with_capacity(records.len());
    for record in records {
        let size = resolve_image(&api, &record.name, &record.target, &host)
            .await
            .ok()
            .map(|image| image.size());
        let platforms = platforms_of(&api, &record).await;
        listed.push(Listed {
            record,
            size,
            platforms,
        });
    }
    match context.format {
        Format::Json => print_json(&listed.iter().map(listed_json).collect()),
        Format::Table => {
            let mut table = Table::new(&["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]);
            for item in &listed {
                table.row(vec![
                    item.record.name.clone(),
                    item.record.target.media_type.clone(),
                    item.record.target.digest.clone(),
                    item.size.map(human_size).unwrap_or_else(|| "-".into()),
                    if item.platforms.is_empty() {
                        "-".into()
                    } else {
                        item.platforms.join(",")
                    },
                    labels_cell(&item.record.labels),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// The platforms an image holds: its index entries' platforms, or its one manifest's
/// config platform. Whatever cannot be read is left out.
pub async fn platforms_of(api: &Api, record: &ImageRecord) -> Vec<String> {
    let Ok(tree) = select_manifests(api, &record.target, &PlatformSelection::All).await else {
        return Vec::new();
    };
    let mut platforms = Vec::new();
    for manifest in &tree.manifests {
        let platform = match &manifest.platform {
            Some(platform) => Some(platform.to_string()),
            None => read_manifest_and_config(api, manifest)
                .await
                .ok()
                .map(|(_, config)| config.platform())
                .filter(|p| !p.os.is_empty())
                .map(|p| p.to_string()),
        };
        if let Some(platform) = platform {
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
    }
    platforms.sort();
    platforms
}

fn listed_json(item: &Listed) -> serde_json::Value {
    serde_json::json!({
        "name": item.record.name,
        "media_type": item.record.target.media_type,
        "digest": item.record.target.digest,
        "size": item.size,
        "platforms": item.platforms,
        "labels": item.record.labels,
        "created_at": item.record.created_at.map(system_time_text),
        "updated_at": item.record.updated_at.map(system_time_text),
    })
}

/// A wall-clock time as RFC 3339 UTC.
pub fn system_time_text(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::output::rfc3339(since.as_secs() as i64, since.subsec_nanos())
}
