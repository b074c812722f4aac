//! `berthctl images …`: image names and what they point at, and moving images in and
//! out of the node (registries, OCI archives).

pub mod check;
pub mod export;
pub mod import;
pub mod label;
pub mod list;
pub mod mount;
pub mod pull;
pub mod push;
pub mod registry_args;
pub mod remove;
pub mod tag;
pub mod usage;

use berth_client::platform::Platform;

use crate::context::Context;
use crate::error::CliError;

/// The `images` subcommands, named as in ctr.
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// List images: name, type, digest, size, platforms, labels.
    #[command(alias = "list")]
    Ls(list::ListArgs),
    /// Pull an image from a registry and unpack it.
    Pull(pull::PullArgs),
    /// Push an image to a registry.
    Push(push::PushArgs),
    /// Import images from an OCI image layout or `docker save` tar.
    Import(import::ImportArgs),
    /// Export images as an OCI image layout tar.
    Export(export::ExportArgs),
    /// Remove images by name.
    #[command(aliases = ["remove", "delete", "del"])]
    Rm(remove::RemoveArgs),
    /// Give an image more names.
    Tag(tag::TagArgs),
    /// Check that images' content is all there and unpacked.
    Check(check::CheckArgs),
    /// Show the disk the unpacked layers of an image take.
    Usage(usage::UsageArgs),
    /// Set or clear labels of an image.
    Label(label::LabelArgs),
    /// Mount an image's filesystem on a directory (unpacking it first if needed).
    Mount(mount::MountArgs),
    /// Unmount an image mounted with `images mount`.
    Unmount(mount::UnmountArgs),
}

/// Runs one `images` subcommand.
pub async fn run(context: &Context, command: ImagesCommand) -> Result<(), CliError> {
    match command {
        ImagesCommand::Ls(args) => list::run(context, args).await,
        ImagesCommand::Pull(args) => pull::run(context, args).await,
        ImagesCommand::Push(args) => push::run(context, args).await,
        ImagesCommand::Import(args) => import::run(context, args).await,
        ImagesCommand::Export(args) => export::run(context, args).await,
        ImagesCommand::Rm(args) => remove::run(context, args).await,
        ImagesCommand::Tag(args) => tag::run(context, args).await,
        ImagesCommand::Check(args) => check::run(context, args).await,
        ImagesCommand::Usage(args) => usage::run(context, args).await,
        ImagesCommand::Label(args) => label::run(context, args).await,
        ImagesCommand::Mount(args) => mount::mount(context, args).await,
        ImagesCommand::Unmount(args) => mount::unmount(context, args).await,
    }
}

/// The platform a `--platform` flag names, or this host's when it is not given.
pub fn platform_arg(text: Option<&str>) -> Result<Platform, CliError> {
    match text {
        Some(text) => Platform::parse(text).map_err(|e| CliError::Usage(e.to_string())),
        None => Ok(Platform::host()),
    }
}
