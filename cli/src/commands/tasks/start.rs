//! `tasks start` (create and start a container's task) and `tasks attach` (join a
//! running one).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_proto::containerd::services::tasks::v1::GetRequest;

use super::attached::{follow, wait_for_exit, ProcessRef};
use super::exit_code;
use super::launch::{launch_task, Launch, Launched, StdioFlags};
use crate::commands::containers;
use crate::context::Context;
use crate::error::CliError;
use crate::stdio::{Attach, ProcessFifos, ProcessIo};

/// Arguments of `tasks start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Return once the task runs instead of staying attached to it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where the task's stdio goes.
    #[command(flatten)]
    pub stdio: StdioFlags,
    /// The container whose task to start.
    pub id: String,
}

/// Arguments of `tasks attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The task to attach to.
    pub id: String,
}

/// Starts the task of an existing container. Attached, exits with the task's status
/// after deleting the task (as ctr does); detached, prints nothing.
pub async fn start(context: &Context, args: StartArgs) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    let container = containers::get(&api, &args.id).await?;
    let launch = Launch {
        namespace: context.namespace.clone(),
        container_id: args.id,
        snapshot: containers::snapshot_of(&container),
        terminal: containers::has_terminal(&container),
        detach: args.detach,
        stdio: args.stdio,
    };
    match launch_task(&api, &launch).await? {
        Launched::Detached { .. } => Ok(ExitCode::SUCCESS),
        Launched::Exited { status } => Ok(exit_code(status)),
    }
}

/// Attaches to the stdio fifos of a running task (one started detached by berthctl or
/// ctr) and follows it to its end, exiting with its status. The task is not deleted.
pub async fn attach(context: &Context, args: AttachArgs) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    let id = &args.id;
    let process = api
        .tasks()
        .get(GetRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .map_err(CliError::rpc(format!("looking up task {id}")))?
        .into_inner()
        .process
        .unwrap_or_default();
    let is_fifo = |path: &str| !path.is_empty() && !path.contains("://");
    if !is_fifo(&process.stdout) {
        return Err(CliError::Failed(format!(
            "task {id} has no stdio fifos to attach to (it was started with --null-io or --log-uri)"
        )));
    }
    let fifos = ProcessFifos {
        stdin: PathBuf::from(&process.stdin),
        stdout: PathBuf::from(&process.stdout),
        stderr: is_fifo(&process.stderr).then(|| PathBuf::from(&process.stderr)),
    };
    let io = ProcessIo::open(&fifos, Attach::Existing, is_fifo(&process.stdin))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let target = ProcessRef::init(id);
    let wait = wait_for_exit(&api, &target);
    let status = follow(&api, &target, Some(io), process.terminal, wait).await?;
    Ok(exit_code(status))
}
