//! `berthctl images label`: set or clear an image's labels.

use std::collections::HashMap;

use berth_proto::containerd::services::images::v1::{Image, UpdateImageRequest};

use crate::arg_values::{label_update, parse_labels};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{labels_json, print_json, Format};

/// Options of `images label`.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// Replace all labels with those given (none given: remove all).
    #[arg(long, short = 'r')]
    replace_all: bool,
    /// The image.
    name: String,
    /// Labels as key=value; an empty value removes the label.
    labels: Vec<String>,
}

/// Updates the labels and prints the image's labels afterwards.
pub async fn run(context: &Context, args: LabelArgs) -> Result<(), CliError> {
    let (labels, mut paths): (HashMap<String, String>, Vec<String>) =
        label_update(parse_labels(&args.labels)?);
    if args.replace_all {
        paths = vec!["labels".to_string()];
    }
    if paths.is_empty() {
        return Err(CliError::Usage(
            "give labels as key=value (key= removes one), or --replace-all".into(),
        ));
    }
    let api = context.api().await?;
    let image = api
        .images()
        .update(UpdateImageRequest {
            image: Some(Image {
                name: args.name.clone(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(CliError::rpc(format!("labelling image {}", args.name)))?
        .into_inner()
        .image
        .unwrap_or_default();
    match context.format {
        Format::Json => print_json(&serde_json::json!({
            "name": image.name,
            "labels": labels_json(&image.labels),
        })),
        Format::Table => {
            let mut pairs: Vec<_> = image.labels.iter().collect();
            pairs.sort();
            for (key, value) in pairs {
                println!("{key}={value}");
            }
        }
    }
    Ok(())
}
