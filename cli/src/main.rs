//! `berthctl`: the ctr-like command line for people who drive Berth on a node.
//!
//! It speaks only berthd's public gRPC API (the containerd v1 API), like any other
//! client. Every command lives in its own file under `commands/`; this file parses the
//! command line, connects, dispatches, and turns an error into one line on stderr and a
//! non-zero exit code.

mod arg_values;
mod commands;
mod context;
mod error;
mod output;
mod progress_display;
mod spec;
mod stdio;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::context::Context;
use crate::error::CliError;
use crate::output::Format;

/// The socket berthd listens on by default (`<default state>/berthd.sock`).
const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";

/// berthctl: drive Berth (containers, images, snapshots, content) from the command line.
#[derive(Debug, Parser)]
#[command(name = "berthctl", version, about, propagate_version = true)]
struct Cli {
    /// berthd's gRPC socket.
    #[arg(long, short = 'a', env = "BERTH_ADDRESS", default_value = DEFAULT_ADDRESS, global = true)]
    address: PathBuf,
    /// The namespace to work in.
    #[arg(
        long,
        short = 'n',
        env = "BERTH_NAMESPACE",
        default_value = "default",
        global = true
    )]
    namespace: String,
    /// Output of listings: aligned tables for people, JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// The command groups, named as in ctr.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the client's and the daemon's versions.
    Version,
    /// List the daemon's plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
    /// Manage namespaces.
    #[command(subcommand, alias = "ns")]
    Namespaces(commands::namespaces::NamespacesCommand),
    /// Manage images: pull, push, import, export, list, tag, mount.
    #[command(subcommand, alias = "i")]
    Images(commands::images::ImagesCommand),
    /// Manage blobs in the content store.
    #[command(subcommand)]
    Content(commands::content::ContentCommand),
    /// Manage snapshots.
    #[command(alias = "snapshot")]
    Snapshots(commands::snapshots::SnapshotsArgs),
    /// Manage leases.
    #[command(subcommand)]
    Leases(commands::leases::LeasesCommand),
    /// Print the daemon's events as they happen, until interrupted.
    Events(commands::events::EventsArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(commands::completion::CompletionArgs),
    /// Manage containers (records of image, runtime, spec and snapshot).
    #[command(subcommand, alias = "c")]
    Containers(commands::containers::ContainersCommand),
    /// Manage tasks (the running processes of containers).
    #[command(subcommand, alias = "t")]
    Tasks(commands::tasks::TasksCommand),
    /// Run a container from an image, attached unless -d, exiting with its status.
    Run(Box<commands::run::RunArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berthctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let context = Context::new(cli.address, cli.namespace, cli.format);
    match runtime.block_on(dispatch(&context, cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("berthctl: {error}");
            error.exit_code()
        }
    }
}

/// Runs one command. Commands that mirror a process's exit status (`run`, `tasks wait`)
/// return it as the exit code.
async fn dispatch(context: &Context, command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Version => commands::version::run(context).await?,
        Command::Plugins(command) => commands::plugins::run(context, command).await?,
        Command::Namespaces(command) => commands::namespaces::run(context, command).await?,
        Command::Images(command) => commands::images::run(context, command).await?,
        Command::Content(command) => commands::content::run(context, command).await?,
        Command::Snapshots(args) => commands::snapshots::run(context, args).await?,
        Command::Leases(command) => commands::leases::run(context, command).await?,
        Command::Events(args) => commands::events::run(context, args).await?,
        Command::Completion(args) => commands::completion::run(args, Cli::command())?,
        Command::Containers(command) => return commands::containers::run(context, command).await,
        Command::Tasks(command) => return commands::tasks::run(context, command).await,
        Command::Run(args) => return commands::run::run(context, *args).await,
    }
    Ok(ExitCode::SUCCESS)
}
