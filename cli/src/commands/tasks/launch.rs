//! Creating and starting a container's task, attached or detached: what `run` and
//! `tasks start` share.
//!
//! Attached, the task's stdio goes through fifos in a private directory that is removed
//! when berthctl is done; berthctl follows the task to its end and deletes it, as ctr
//! does. Detached, the fifos stay for `tasks attach` (and are removed by `tasks rm`), or
//! the task gets no stdio (`--null-io`) or a log (`--log-uri`).

use std::path::PathBuf;

use berth_client::Api;
use berth_proto::containerd::services::snapshots::v1::MountsRequest;
use berth_proto::containerd::services::tasks::v1::{
    CreateTaskRequest, DeleteTaskRequest, StartRequest,
};
use berth_proto::containerd::types::Mount;

use super::attached::{follow, wait_for_exit, ProcessRef};
use crate::error::CliError;
use crate::stdio::{default_fifo_root, hold_output_fifos, Attach, FifoDir, ProcessIo};

/// Where a new task's stdio goes, as the flags of `run` and `tasks start` say.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StdioFlags {
    /// Give the task no stdio at all (it reads and writes /dev/null).
    #[arg(long, conflicts_with = "log_uri")]
    pub null_io: bool,
    /// Send the task's output to a log: file:///path or binary:///program?arg=value.
    #[arg(long, value_name = "URI")]
    pub log_uri: Option<String>,
    /// The directory to make the task's stdio fifos in (default /run/berth/fifo).
    #[arg(long, value_name = "DIR")]
    pub fifo_dir: Option<PathBuf>,
}

/// How a task is launched.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The namespace (part of the fifo directory's name).
    pub namespace: String,
    /// The container whose task it is.
    pub container_id: String,
    /// The container's snapshotter and snapshot key (its root filesystem), if it has one.
    pub snapshot: Option<(String, String)>,
    /// Whether the process has a terminal (from the container's spec).
    pub terminal: bool,
    /// Return once it runs instead of following it.
    pub detach: bool,
    /// Where its stdio goes.
    pub stdio: StdioFlags,
}

/// How a launched task ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launched {
    /// It runs on without berthctl (`-d`).
    Detached {
        /// Its init process.
        pid: u32,
    },
    /// It ran to its end (berthctl followed it) and its task was deleted.
    Exited {
        /// Its exit status (128 + signal number if a signal ended it).
        status: u32,
    },
}

/// The stdio paths a task is created with, and what keeps them alive.
struct TaskStdio {
    paths: (String, String, String),
    fifo_dir: Option<FifoDir>,
    io: Option<ProcessIo>,
    /// A detached task's output fifos, held open for reading until it has started.
    held: Vec<std::fs::File>,
}

impl TaskStdio {
    /// Makes the fifos (or not, for null io or a log) and, when attached, opens them.
    fn prepare(launch: &Launch) -> Result<TaskStdio, CliError> {
        if launch.stdio.null_io {
            return Ok(TaskStdio {
                paths: Default::default(),
                fifo_dir: None,
                io: None,
                held: Vec::new(),
            });
        }
        if let Some(uri) = &launch.stdio.log_uri {
            return Ok(TaskStdio {
                paths: (String::new(), uri.clone(), uri.clone()),
                fifo_dir: None,
                io: None,
                held: Vec::new(),
            });
        }
        let root = launch
            .stdio
            .fifo_dir
            .clone()
            .unwrap_or_else(default_fifo_root);
        let label = format!("{}-{}", launch.namespace, launch.container_id);
        let dir = FifoDir::create(&root, &label).map_err(|e| CliError::Failed(e.to_string()))?;
        let fifos = dir
            .make_fifos(&launch.container_id, launch.terminal)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let failed = |e: crate::stdio::StdioError| CliError::Failed(e.to_string());
        let (io, held) = if launch.detach {
            (None, hold_output_fifos(&fifos).map_err(failed)?)
        } else {
            let io = ProcessIo::open(&fifos, Attach::NewProcess, true).map_err(failed)?;
            (Some(io), Vec::new())
        };
        Ok(TaskStdio {
            paths: fifos.wire_paths(),
            fifo_dir: Some(dir),
            io,
            held,
        })
    }
}

/// Creates and starts the task of `launch.container_id`. A task that cannot be created
/// or started is deleted again, and its fifos removed, before the error is returned, so
/// nothing of it is left and nothing waits on its fifos.
pub async fn launch_task(api: &Api, launch: &Launch) -> Result<Launched, CliError> {
    let id = &launch.container_id;
    let rootfs = match &launch.snapshot {
        Some((snapshotter, key)) => root_mounts(api, snapshotter, key).await?,
        None => Vec::new(),
    };
    let mut stdio = TaskStdio::prepare(launch)?;
    let (stdin, stdout, stderr) = stdio.paths.clone();
    let created = api
        .tasks()
        .create(CreateTaskRequest {
            container_id: id.clone(),
            stdin,
            stdout,
            stderr,
            terminal: launch.terminal,
            rootfs,
            ..Default::default()
        })
        .await
        .map_err(CliError::rpc(format!("creating task {id}")))?
        .into_inner();

    let process = ProcessRef::init(id);
    let wait = (!launch.detach).then(|| wait_for_exit(api, &process));
    let started = api
        .tasks()
        .start(StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await;
    if let Some(io) = stdio.io.as_mut() {
        io.process_started();
    }
    stdio.held.clear();
    if let Err(status) = started {
        if let Some(wait) = wait {
            wait.abort();
        }
        delete_quietly(api, id).await;
        return Err(CliError::rpc(format!("starting task {id}"))(status));
    }

    let Some(wait) = wait else {
        if let Some(dir) = stdio.fifo_dir.take() {
            dir.keep();
        }
        return Ok(Launched::Detached { pid: created.pid });
    };
    let followed = follow(api, &process, stdio.io.take(), launch.terminal, wait).await;
    let deleted = api
        .tasks()
        .delete(DeleteTaskRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!("deleting task {id}")));
    let status = followed?;
    deleted?;
    Ok(Launched::Exited { status })
}

/// The mounts of a container's snapshot, sent with Tasks.Create as ctr sends them (the
/// daemon mounts them as the task's root filesystem).
async fn root_mounts(api: &Api, snapshotter: &str, key: &str) -> Result<Vec<Mount>, CliError> {
    Ok(api
        .snapshots()
        .mounts(MountsRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        })
        .await
        .map_err(CliError::rpc(format!(
            "reading the mounts of snapshot {key}"
        )))?
        .into_inner()
        .mounts)
}

/// Deletes task `id`, ignoring failure (cleanup after an error that is reported instead).
pub async fn delete_quietly(api: &Api, id: &str) {
    let _ = api
        .tasks()
        .delete(DeleteTaskRequest {
            container_id: id.to_string(),
        })
        .await;
}
