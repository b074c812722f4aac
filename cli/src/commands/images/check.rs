//! `berthctl images check`: whether each image's content is all there and unpacked.

use berth_client::content::blob_info;
use berth_client::image::{is_unpacked, list_images, resolve_image, ImageRecord};
use berth_client::platform::Platform;
use berth_client::Api;

use crate::commands::snapshots::DEFAULT_SNAPSHOTTER;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{human_size, print_json, Format, Table};

/// Options of `images check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print only the names of images that are complete and unpacked.
    #[arg(long, short)]
    quiet: bool,
    /// The snapshotter to look for unpacked layers in.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    snapshotter: String,
    /// Filters such as `name~=busybox` (any may match).
    filters: Vec<String>,
}

/// What was found for one image on the host platform.
#[derive(Debug, Default)]
struct Checked {
    /// Blobs needed to run the image (config and layers).
    required: usize,
    /// Of those, how many the store holds.
    available: usize,
    /// Bytes of the blobs held, and of all needed.
    bytes_available: u64,
    bytes_required: u64,
    unpacked: bool,
    /// Why the image could not be read at all (a missing manifest, say).
    problem: Option<String>,
}

impl Checked {
    fn complete(&self) -> bool {
        self.problem.is_none() && self.available == self.required
    }

    fn status(&self) -> String {
        match &self.problem {
            Some(problem) => format!("incomplete ({problem})"),
            None if self.complete() => format!("complete ({}/{})", self.available, self.required),
            None => format!("incomplete ({}/{})", self.available, self.required),
        }
    }
}

/// Checks every image (or those the filters match), sorted by name.
pub async fn run(context: &Context, args: CheckArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut records = list_images(&api, &args.filters).await?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut results = Vec::with_capacity(records.len());
    for record in records {
        let checked = check(&api, &record, &args.snapshotter).await?;
        results.push((record, checked));
    }
    match context.format {
        Format::Json => print_json(
            &results
                .iter()
                .map(|(record, c)| {
                    serde_json::json!({
                        "name": record.name,
                        "media_type": record.target.media_type,
                        "digest": record.target.digest,
                        "complete": c.complete(),
                        "available": c.available,
                        "required": c.required,
                        "size_available": c.bytes_available,
                        "size_required": c.bytes_required,
                        "unpacked": c.unpacked,
                        "problem": c.problem,
                    })
                })
                .collect(),
        ),
        Format::Table if args.quiet => {
            for (record, checked) in &results {
                if checked.complete() && checked.unpacked {
                    println!("{}", record.name);
                }
            }
        }
        Format::Table => {
            let mut table = Table::new(&["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"]);
            for (record, checked) in &results {
                table.row(vec![
                    record.name.clone(),
                    record.target.media_type.clone(),
                    record.target.digest.clone(),
                    checked.status(),
                    format!(
                        "{}/{}",
                        human_size(checked.bytes_available),
                        human_size(checked.bytes_required)
                    ),
                    checked.unpacked.to_string(),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// Looks up each blob the host platform's image needs. An image whose index, manifest or
/// config cannot be read is reported as incomplete with the reason, not as an error.
async fn check(api: &Api, record: &ImageRecord, snapshotter: &str) -> Result<Checked, CliError> {
    let image = match resolve_image(api, &record.name, &record.target, &Platform::host()).await {
        Ok(image) => image,
        Err(e) if e.is_not_found() => {
            return Ok(Checked {
                problem: Some("manifest or config missing".into()),
                ..Checked::default()
            })
        }
        Err(e) => {
            return Ok(Checked {
                problem: Some(e.to_string()),
                ..Checked::default()
            })
        }
    };
    let mut checked = Checked::default();
    let needed = std::iter::once(image.config_descriptor()).chain(image.manifest.layers.iter());
    for descriptor in needed {
        checked.required += 1;
        checked.bytes_required += descriptor.size;
        if blob_info(api, &descriptor.digest).await?.is_some() {
            checked.available += 1;
            checked.bytes_available += descriptor.size;
        }
    }
    checked.unpacked = is_unpacked(api, &image, snapshotter).await?;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_ctr() {
        let complete = Checked {
            required: 2,
            available: 2,
            ..Checked::default()
        };
        assert_eq!(complete.status(), "complete (2/2)");
        let partial = Checked {
            required: 3,
            available: 1,
            ..Checked::default()
        };
        assert_eq!(partial.status(), "incomplete (1/3)");
        assert!(!partial.complete());
        let unreadable = Checked {
            problem: Some("manifest or config missing".into()),
            ..Checked::default()
        };
        assert_eq!(
            unreadable.status(),
            "incomplete (manifest or config missing)"
        );
    }
}
