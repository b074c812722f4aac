//! `berthctl images tag`: more names for the same image.

use berth_proto::containerd::services::images::v1::{
    CreateImageRequest, GetImageRequest, Image, UpdateImageRequest,
};

use crate::context::Context;
use crate::error::CliError;

/// Options of `images tag`.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// Point an existing name at the source image instead of failing.
    #[arg(long)]
    force: bool,
    /// The image to tag.
    source: String,
    /// The new names.
    #[arg(required = true)]
    targets: Vec<String>,
}

/// Creates each target name with the source's target and labels, printing it.
pub async fn run(context: &Context, args: TagArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut client = api.images();
    let source = client
        .get(GetImageRequest {
            name: args.source.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("reading image {}", args.source)))?
        .into_inner()
        .image
        .ok_or_else(|| CliError::Failed(format!("image {}: berthd sent no record", args.source)))?;
    for target in args.targets {
        let image = Image {
            name: target.clone(),
            labels: source.labels.clone(),
            target: source.target.clone(),
            created_at: None,
            updated_at: None,
        };
        let created = client
            .create(CreateImageRequest {
                image: Some(image.clone()),
            })
            .await;
        match created {
            Ok(_) => {}
            Err(status) if args.force && status.code() == tonic::Code::AlreadyExists => {
                client
                    .update(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into(), "labels".into()],
                        }),
                    })
                    .await
                    .map_err(CliError::rpc(format!("re-pointing image {target}")))?;
            }
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                return Err(CliError::Failed(format!(
                    "tagging {target}: an image of that name exists (use --force to re-point it)"
                )));
            }
            Err(status) => return Err(CliError::rpc(format!("tagging {target}"))(status)),
        }
        println!("{target}");
    }
    Ok(())
}
