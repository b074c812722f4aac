//! `berthctl images rm`: forget image names; what only they held becomes collectable.

use berth_proto::containerd::services::images::v1::DeleteImageRequest;

use crate::context::Context;
use crate::error::CliError;

/// Options of `images rm`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// Wait until the image's content and snapshots that nothing else uses are removed.
    #[arg(long)]
    sync: bool,
    /// The images to remove.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Removes each image, printing the names removed; every failure is reported.
pub async fn run(context: &Context, args: RemoveArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut client = api.images();
    let mut failures = Vec::new();
    for name in args.names {
        match client
            .delete(DeleteImageRequest {
                name: name.clone(),
                sync: args.sync,
            })
            .await
        {
            Ok(_) => println!("{name}"),
            Err(status) => failures.push(CliError::rpc(format!("removing image {name}"))(status)),
        }
    }
    CliError::from_failures(failures)
}
