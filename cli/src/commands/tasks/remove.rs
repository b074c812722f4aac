//! `tasks rm`: deleting stopped tasks (or, with `-f`, killing them first), reporting a
//! non-zero exit status, and removing the fifos berthctl made for them.

use std::time::Duration;

use berth_client::Api;
use berth_proto::containerd::services::tasks::v1::{
    DeleteProcessRequest, DeleteTaskRequest, GetRequest, KillRequest, WaitRequest,
};
use berth_proto::containerd::v1::types::{Process, Status};

use super::status_text;
use crate::context::Context;
use crate::error::CliError;
use crate::stdio::remove_task_fifos;

/// How long `-f` waits for a killed process to exit.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// Arguments of `tasks rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill the task (SIGKILL to all its processes) if it still runs.
    #[arg(short, long)]
    pub force: bool,
    /// Delete this exec of the task instead of the task.
    #[arg(long)]
    pub exec_id: Option<String>,
    /// The tasks.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// Deletes each task named; every failure is reported, the others still deleted.
pub async fn rm(context: &Context, args: RmArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let exec_id = args.exec_id.unwrap_or_default();
    let mut failures = Vec::new();
    for id in &args.ids {
        if let Err(e) = remove_one(&api, id, &exec_id, args.force).await {
            failures.push(e);
        }
    }
    CliError::from_failures(failures)
}

/// The process `exec_id` (empty: the init) of task `id`.
async fn get_process(api: &Api, id: &str, exec_id: &str) -> Result<Process, CliError> {
    let what = if exec_id.is_empty() {
        format!("looking up task {id}")
    } else {
        format!("looking up exec {exec_id} of task {id}")
    };
    Ok(api
        .tasks()
        .get(GetRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
        .await
        .map_err(CliError::rpc(what))?
        .into_inner()
        .process
        .unwrap_or_default())
}

/// Kills a process with SIGKILL (every process of the task, for the init) and waits
/// until it has exited.
async fn kill_and_wait(api: &Api, id: &str, exec_id: &str) -> Result<(), CliError> {
    let killed = api
        .tasks()
        .kill(KillRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal: libc::SIGKILL as u32,
            all: exec_id.is_empty(),
        })
        .await;
    if let Err(status) = killed {
        // Already gone between the look-up and the kill: nothing to wait for.
        if status.code() != tonic::Code::NotFound {
            return Err(CliError::rpc(format!("killing task {id}"))(status));
        }
    }
    let waited = tokio::time::timeout(
        KILL_WAIT,
        api.tasks().wait(WaitRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        }),
    )
    .await
    .map_err(|_| {
        CliError::Failed(format!(
            "task {id} did not exit within {KILL_WAIT:?} of SIGKILL"
        ))
    })?;
    waited.map_err(CliError::rpc(format!("waiting for task {id} to exit")))?;
    Ok(())
}

/// Deletes one task or exec.
async fn remove_one(api: &Api, id: &str, exec_id: &str, force: bool) -> Result<(), CliError> {
    let process = get_process(api, id, exec_id).await?;
    let status = Status::try_from(process.status).unwrap_or(Status::Unknown);
    if !matches!(status, Status::Stopped | Status::Created) {
        if !force {
            return Err(CliError::Failed(format!(
                "task {id} must be stopped before it is deleted: it is {} (use -f to kill it)",
                status_text(process.status).to_ascii_lowercase()
            )));
        }
        kill_and_wait(api, id, exec_id).await?;
    }
    let deleted = if exec_id.is_empty() {
        api.tasks()
            .delete(DeleteTaskRequest {
                container_id: id.to_string(),
            })
            .await
    } else {
        api.tasks()
            .delete_process(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await
    }
    .map_err(CliError::rpc(format!("deleting task {id}")))?
    .into_inner();
    remove_task_fifos([
        process.stdin.as_str(),
        process.stdout.as_str(),
        process.stderr.as_str(),
    ]);
    if deleted.exit_status != 0 {
        eprintln!(
            "berthctl: warning: task {id} exited with non-zero status {}",
            deleted.exit_status
        );
    }
    Ok(())
}
