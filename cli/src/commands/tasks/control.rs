//! `tasks kill`, `tasks pause`, `tasks resume` and `tasks wait`: one call each on a
//! task (or one of its execs).

use std::process::ExitCode;

use berth_proto::containerd::services::tasks::v1::{
    KillRequest, PauseTaskRequest, ResumeTaskRequest, WaitRequest,
};

use super::exit_code;
use super::signal::{parse_signal, signal_name};
use crate::context::Context;
use crate::error::CliError;

/// Arguments of `tasks kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The signal: a name (SIGKILL, KILL) or a number.
    #[arg(short, long, default_value = "SIGTERM", value_parser = parse_signal)]
    pub signal: u32,
    /// Send the signal to every process of the task, not only its init.
    #[arg(long, conflicts_with = "exec_id")]
    pub all: bool,
    /// Signal this exec of the task instead of its init.
    #[arg(long)]
    pub exec_id: Option<String>,
    /// The task.
    pub id: String,
}

/// Arguments naming one task.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The task.
    pub id: String,
}

/// Arguments of `tasks wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Wait for this exec of the task instead of its init.
    #[arg(long)]
    pub exec_id: Option<String>,
    /// The task.
    pub id: String,
}

/// Sends a signal to a task.
pub async fn kill(context: &Context, args: KillArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    api.tasks()
        .kill(KillRequest {
            container_id: args.id.clone(),
            exec_id: args.exec_id.unwrap_or_default(),
            signal: args.signal,
            all: args.all,
        })
        .await
        .map_err(CliError::rpc(format!(
            "sending {} to task {}",
            signal_name(args.signal),
            args.id
        )))?;
    Ok(())
}

/// Pauses a task.
pub async fn pause(context: &Context, args: IdArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    api.tasks()
        .pause(PauseTaskRequest {
            container_id: args.id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("pausing task {}", args.id)))?;
    Ok(())
}

/// Resumes a paused task.
pub async fn resume(context: &Context, args: IdArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    api.tasks()
        .resume(ResumeTaskRequest {
            container_id: args.id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("resuming task {}", args.id)))?;
    Ok(())
}

/// Waits for a task (or exec) to exit and exits with its status.
pub async fn wait(context: &Context, args: WaitArgs) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    let exec_id = args.exec_id.unwrap_or_default();
    let what = if exec_id.is_empty() {
        format!("waiting for task {}", args.id)
    } else {
        format!("waiting for exec {exec_id} of task {}", args.id)
    };
    let reply = api
        .tasks()
        .wait(WaitRequest {
            container_id: args.id,
            exec_id,
        })
        .await
        .map_err(CliError::rpc(what))?
        .into_inner();
    Ok(exit_code(reply.exit_status))
}
