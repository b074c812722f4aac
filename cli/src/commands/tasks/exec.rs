//! `tasks exec`: another process in a running task, made from the container's own
//! process spec with the command, terminal, working directory, environment and user
//! changed, followed to its end like `run` follows the task.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_client::lease::{TemporaryLease, TEMPORARY_LEASE_EXPIRY};
use berth_client::Api;
use berth_proto::containerd::services::containers::v1::Container;
use berth_proto::containerd::services::snapshots::v1::StatSnapshotRequest;
use berth_proto::containerd::services::tasks::v1::{
    DeleteProcessRequest, ExecProcessRequest, StartRequest,
};
use berth_proto::type_urls;
use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::spec as oci;
use rand::Rng;

use super::attached::{follow, wait_for_exit, ProcessRef};
use super::exit_code;
use crate::commands::containers;
use crate::context::Context;
use crate::error::CliError;
use crate::spec::rootfs_view::with_image_rootfs;
use crate::stdio::{default_fifo_root, Attach, FifoDir, ProcessIo};

/// Arguments of `tasks exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The exec's id, unique within the task (generated when not given).
    #[arg(long)]
    pub exec_id: Option<String>,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The working directory of the process.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE). Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user: name, uid, name:group or uid:gid (names from the image).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// The directory to make the process's stdio fifos in (default /run/berth/fifo).
    #[arg(long, value_name = "DIR")]
    pub fifo_dir: Option<PathBuf>,
    /// The task.
    pub id: String,
    /// The command line to run.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// A fresh exec id: `exec-<8 hex digits>`.
fn generated_exec_id() -> String {
    format!("exec-{:08x}", rand::thread_rng().gen::<u32>())
}

/// Runs a process in a task and exits with its status.
pub async fn exec(context: &Context, args: ExecArgs) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    let container = containers::get(&api, &args.id).await?;
    let exec_id = args.exec_id.clone().unwrap_or_else(generated_exec_id);
    let process_json = exec_process(&api, &container, &args).await?;

    let root = args.fifo_dir.clone().unwrap_or_else(default_fifo_root);
    let label = format!("{}-{}-{exec_id}", context.namespace, args.id);
    let failed = |e: crate::stdio::StdioError| CliError::Failed(e.to_string());
    let fifo_dir = FifoDir::create(&root, &label).map_err(failed)?;
    let fifos = fifo_dir.make_fifos(&exec_id, args.tty).map_err(failed)?;
    let mut io = ProcessIo::open(&fifos, Attach::NewProcess, true).map_err(failed)?;
    let (stdin, stdout, stderr) = fifos.wire_paths();

    let process = ProcessRef {
        container_id: args.id.clone(),
        exec_id: exec_id.clone(),
    };
    api.tasks()
        .exec(ExecProcessRequest {
            container_id: args.id.clone(),
            stdin,
            stdout,
            stderr,
            terminal: args.tty,
            spec: Some(prost_types::Any {
                type_url: type_urls::OCI_PROCESS.to_string(),
                value: process_json,
            }),
            exec_id: exec_id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("creating {}", process.describe())))?;

    let wait = wait_for_exit(&api, &process);
    let started = api
        .tasks()
        .start(StartRequest {
            container_id: args.id.clone(),
            exec_id: exec_id.clone(),
        })
        .await;
    io.process_started();
    if let Err(status) = started {
        wait.abort();
        delete_exec(&api, &process).await.ok();
        return Err(CliError::rpc(format!("starting {}", process.describe()))(
            status,
        ));
    }
    let followed = follow(&api, &process, Some(io), args.tty, wait).await;
    let deleted = delete_exec(&api, &process).await;
    drop(fifo_dir);
    let status = followed?;
    deleted?;
    Ok(exit_code(status))
}

/// Deletes a finished exec.
async fn delete_exec(api: &Api, process: &ProcessRef) -> Result<(), CliError> {
    api.tasks()
        .delete_process(DeleteProcessRequest {
            container_id: process.container_id.clone(),
            exec_id: process.exec_id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("deleting {}", process.describe())))?;
    Ok(())
}

/// The exec's process spec as JSON: the container's process with the flags applied.
async fn exec_process(
    api: &Api,
    container: &Container,
    args: &ExecArgs,
) -> Result<Vec<u8>, CliError> {
    let mut spec: Spec = containers::spec_of(container)?;
    oci::with_args(&mut spec, args.args.iter().cloned());
    oci::with_tty(&mut spec, args.tty);
    oci::with_env(&mut spec, &args.env);
    if let Some(cwd) = &args.cwd {
        oci::with_cwd(&mut spec, cwd);
    }
    if let Some(user) = &args.user {
        resolve_user(api, container, &mut spec, user).await?;
    }
    let process = spec.process().clone().unwrap_or_default();
    serde_json::to_vec(&process)
        .map_err(|e| CliError::Failed(format!("encoding the exec's process spec: {e}")))
}

/// Sets the spec's user from `user`, resolving names against the image the container
/// was made from (a read-only view of its snapshot's parent); numbers need no image.
async fn resolve_user(
    api: &Api,
    container: &Container,
    spec: &mut Spec,
    user: &str,
) -> Result<(), CliError> {
    let parent = api
        .snapshots()
        .stat(StatSnapshotRequest {
            snapshotter: container.snapshotter.clone(),
            key: container.snapshot_key.clone(),
        })
        .await
        .ok()
        .and_then(|reply| reply.into_inner().info)
        .map(|info| info.parent)
        .filter(|parent| !parent.is_empty());
    let resolved = match parent {
        Some(parent) => {
            let lease = TemporaryLease::create(api, TEMPORARY_LEASE_EXPIRY)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let result = with_image_rootfs(lease.api(), &container.snapshotter, &parent, |root| {
                oci::with_user(spec, root, user)
            })
            .await;
            let _ = lease.delete(false).await;
            result.map_err(|e| CliError::Failed(e.to_string()))?
        }
        None => {
            let empty = tempfile::tempdir().map_err(CliError::io("making a temp dir"))?;
            oci::with_user(spec, empty.path(), user)
        }
    };
    resolved.map_err(|e| CliError::Failed(format!("--user {user}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_exec_ids_are_valid_and_differ() {
        let a = generated_exec_id();
        assert!(a.starts_with("exec-") && a.len() == 13, "{a}");
        assert_ne!(a, generated_exec_id());
    }
}
