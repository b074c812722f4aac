//! `containerd.services.tasks.v1.Tasks`: the running side of containers. Each call is
//! translated into a call to the task's shim (`containerd.task.v2.Task`) through the shim
//! manager ([`crate::tasks`]); Create first reads the container record and resolves its
//! spec, root filesystem and runtime options.
//!
//! Tasks are namespaced like containers: a task's id is its container's id.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::containerd::services::tasks::v1::{
    tasks_server::{Tasks, TasksServer},
    CheckpointTaskRequest, CheckpointTaskResponse, CloseIoRequest, CreateTaskRequest,
    CreateTaskResponse, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    ExecProcessRequest, GetRequest, GetResponse, KillRequest, ListPidsRequest, ListPidsResponse,
    ListTasksRequest, ListTasksResponse, MetricsRequest, MetricsResponse, PauseTaskRequest,
    ResizePtyRequest, ResumeTaskRequest, StartRequest, StartResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use berth_proto::containerd::task::v2 as shim;
use berth_proto::containerd::types::{Metric, Mount as WireMount};
use berth_proto::containerd::v1::types::{Process, Status as ProcessStatus};
use berth_proto::type_urls;
use prost_types::Any;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::filters::{Fields, Filter};
use crate::ident;
use crate::metadata::{AnyRecord, ContainerRecord, Kind, RuntimeRecord};
use crate::request;
use crate::services::snapshots::mount_to_wire;
use crate::services::{reply, MAX_MESSAGE_BYTES};
use crate::state::{self, Daemon, SNAPSHOTTER};
use crate::tasks::{
    check_runtime, stopped, ExitedTask, LiveTask, NewTask, TaskError, TaskManager, TaskRef,
};

/// How long List and Metrics wait for one shim before reporting without it, so one hung
/// shim cannot hang a listing of every task.
const PER_SHIM_TIMEOUT: Duration = Duration::from_secs(5);

/// The Tasks service.
pub struct TasksService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> TasksServer<TasksService> {
    TasksServer::new(TasksService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

type TaskResult<T> = Result<T, TaskError>;

/// Checks a task (container) id from a request.
fn task_id(id: &str) -> TaskResult<()> {
    ident::validate(id).map_err(|e| TaskError::Api(e.into()))
}

/// Checks an exec id from a request (empty means the init process).
fn exec_id(id: &str) -> TaskResult<()> {
    if id.is_empty() {
        Ok(())
    } else {
        ident::validate(id).map_err(|e| TaskError::Api(e.into()))
    }
}

/// The wire process for a shim's state reply. The init process is named by the container
/// id (ctr prints that as the task id), an exec by its exec id.
fn process_from_state(container_id: &str, exec_id: &str, state: shim::StateResponse) -> Process {
    Process {
        container_id: container_id.to_string(),
        id: if exec_id.is_empty() {
            container_id.to_string()
        } else {
            exec_id.to_string()
        },
        pid: state.pid,
        status: state.status,
        stdin: state.stdin,
        stdout: state.stdout,
        stderr: state.stderr,
        terminal: state.terminal,
        exit_status: state.exit_status,
        exited_at: state.exited_at,
    }
}

/// The wire process of a task whose shim is gone: STOPPED with its recorded exit.
fn process_from_exit(task: &ExitedTask) -> Process {
    Process {
        container_id: task.id.clone(),
        id: task.id.clone(),
        pid: task.exit.pid,
        status: ProcessStatus::Stopped as i32,
        exit_status: task.exit.exit_status,
        exited_at: reply::timestamp(task.exit.exited_at),
        ..Process::default()
    }
}

/// The wire process of a task whose shim did not answer in time.
fn unknown_process(container_id: &str) -> Process {
    Process {
        container_id: container_id.to_string(),
        id: container_id.to_string(),
        status: ProcessStatus::Unknown as i32,
        ..Process::default()
    }
}

/// A task as List and Metrics filters see it: `id` and `container_id` (the same), `pid`,
/// `status` (lower case, e.g. `running`).
struct ProcessFields<'a>(&'a Process);

impl Fields for ProcessFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "id" || f == "container_id" => Some(self.0.container_id.clone()),
            [f] if f == "pid" => Some(self.0.pid.to_string()),
            [f] if f == "status" => Some(self.0.status().as_str_name().to_ascii_lowercase()),
            _ => None,
        }
    }
}

/// The container's OCI spec, as JSON bytes to write to `config.json` unchanged.
fn spec_json(id: &str, spec: &AnyRecord) -> TaskResult<Vec<u8>> {
    if spec.type_url != type_urls::OCI_SPEC {
        return Err(TaskError::InvalidArgument(format!(
            "container {id}: its spec has type {:?}; Berth runs OCI runtime specs ({})",
            spec.type_url,
            type_urls::OCI_SPEC
        )));
    }
    match serde_json::from_slice::<serde_json::Value>(&spec.value) {
        Ok(serde_json::Value::Object(_)) => Ok(spec.value.clone()),
        Ok(_) => Err(TaskError::InvalidArgument(format!(
            "container {id}: its OCI spec is not a JSON object"
        ))),
        Err(e) => Err(TaskError::InvalidArgument(format!(
            "container {id}: its OCI spec is not valid JSON: {e}"
        ))),
    }
}

/// The runtime options for a new task: the request's, else the container's.
fn runtime_options(request: Option<Any>, container: &RuntimeRecord) -> Option<Any> {
    request.filter(|any| !any.type_url.is_empty()).or_else(|| {
        container.options.as_ref().map(|stored| Any {
            type_url: stored.type_url.clone(),
            value: stored.value.clone(),
        })
    })
}

/// The task error for a container whose shim is gone, for calls that need a process.
fn gone(task: &ExitedTask) -> TaskError {
    stopped(task)
}

impl TasksService {
    /// The task manager, once it has found every task again after a restart.
    async fn tasks(&self) -> &TaskManager {
        self.daemon.tasks.wait_until_recovered().await;
        &self.daemon.tasks
    }

    /// Runs one call on a live task's shim; a call that fails because the shim died
    /// becomes `on_gone(exit)`.
    async fn call<T, F, Fut>(
        &self,
        task: &Arc<LiveTask>,
        call: F,
        on_gone: impl FnOnce(&ExitedTask) -> TaskResult<T>,
    ) -> TaskResult<T>
    where
        F: FnOnce(berth_shim::client::TaskClient) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        match call(task.client()).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => {
                let exited = self.tasks().await.call_failed(task, status).await?;
                on_gone(&exited)
            }
        }
    }

    /// The root filesystem mounts for a new task: the request's, else the container's
    /// snapshot's (as the snapshotter hands them out).
    fn rootfs(
        &self,
        ns: &str,
        container: &ContainerRecord,
        requested: Vec<WireMount>,
    ) -> TaskResult<Vec<WireMount>> {
        if !requested.is_empty() || container.snapshot_key.is_empty() {
            return Ok(requested);
        }
        if !container.snapshotter.is_empty() && container.snapshotter != SNAPSHOTTER {
            return Err(TaskError::FailedPrecondition(format!(
                "container {}: snapshotter {:?} is not provided by Berth (only {SNAPSHOTTER})",
                container.id, container.snapshotter
            )));
        }
        let mounts = self
            .daemon
            .snapshots
            .mounts(&state::snapshot_key(ns, &container.snapshot_key))
            .map_err(ApiError::from)?;
        Ok(mounts.into_iter().map(mount_to_wire).collect())
    }

    async fn do_create(&self, req: Request<CreateTaskRequest>) -> TaskResult<CreateTaskResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        if req.checkpoint.is_some() {
            return Err(TaskError::Unimplemented(
                "restoring a task from a checkpoint is not supported by Berth".into(),
            ));
        }
        if !req.runtime_path.is_empty() {
            return Err(TaskError::InvalidArgument(format!(
                "runtime_path {:?}: Berth runs its own shim and does not take a runtime path",
                req.runtime_path
            )));
        }
        let container: ContainerRecord = self
            .daemon
            .meta
            .get(Kind::Container, &ns, &req.container_id)
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                TaskError::NotFound(format!("container {}: not found", req.container_id))
            })?;
        check_runtime(&container.runtime.name)?;
        let spec_json = spec_json(&container.id, &container.spec)?;
        let rootfs = self.rootfs(&ns, &container, req.rootfs)?;
        let options = runtime_options(req.options, &container.runtime);
        tracing::debug!(namespace = %ns, id = %req.container_id, "tasks create");
        let pid = self
            .tasks()
            .await
            .create(NewTask {
                namespace: ns,
                id: req.container_id.clone(),
                spec_json,
                rootfs,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
                options,
            })
            .await?;
        Ok(CreateTaskResponse {
            container_id: req.container_id,
            pid,
        })
    }

    async fn do_start(&self, req: Request<StartRequest>) -> TaskResult<StartResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        let reply = self
            .call(
                &task,
                |mut c| async move {
                    c.start(shim::StartRequest {
                        id: req.container_id,
                        exec_id: req.exec_id,
                    })
                    .await
                },
                |exited| Err(gone(exited)),
            )
            .await?;
        Ok(StartResponse { pid: reply.pid })
    }

    async fn do_delete(&self, req: Request<DeleteTaskRequest>) -> TaskResult<DeleteResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        let deleted = self.tasks().await.delete(&ns, &req.container_id).await?;
        Ok(DeleteResponse {
            id: req.container_id,
            pid: deleted.pid,
            exit_status: deleted.exit_status,
            exited_at: reply::timestamp(deleted.exited_at),
        })
    }

    async fn do_delete_process(
        &self,
        req: Request<DeleteProcessRequest>,
    ) -> TaskResult<DeleteResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        if req.exec_id.is_empty() {
            return Err(TaskError::InvalidArgument(
                "exec_id must be set; the init process is deleted with Delete".into(),
            ));
        }
        exec_id(&req.exec_id)?;
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        let exec = req.exec_id.clone();
        let reply = self
            .call(
                &task,
                |mut c| async move {
                    c.delete(shim::DeleteRequest {
                        id: req.container_id,
                        exec_id: req.exec_id,
                    })
                    .await
                },
                |exited| Err(gone(exited)),
            )
            .await?;
        Ok(DeleteResponse {
            id: exec,
            pid: reply.pid,
            exit_status: reply.exit_status,
            exited_at: reply.exited_at,
        })
    }

    async fn do_get(&self, req: Request<GetRequest>) -> TaskResult<GetResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let process = match self.tasks().await.lookup(&ns, &req.container_id)? {
            TaskRef::Exited(exited) => exited_process(&exited, &req.exec_id)?,
            TaskRef::Live(task) => {
                let (id, exec) = (req.container_id.clone(), req.exec_id.clone());
                self.call(
                    &task,
                    |mut c| async move {
                        c.state(shim::StateRequest {
                            id: req.container_id,
                            exec_id: req.exec_id,
                        })
                        .await
                    },
                    |exited| {
                        exited_process(exited, &exec).map(|p| shim::StateResponse {
                            pid: p.pid,
                            status: p.status,
                            exit_status: p.exit_status,
                            exited_at: p.exited_at,
                            ..shim::StateResponse::default()
                        })
                    },
                )
                .await
                .map(|state| process_from_state(&id, &exec, state))?
            }
        };
        Ok(GetResponse {
            process: Some(process),
        })
    }

    async fn do_list(&self, req: Request<ListTasksRequest>) -> TaskResult<ListTasksResponse> {
        let ns = request::namespace(&req)?;
        let filter = Filter::parse(&[req.get_ref().filter.as_str()]).map_err(ApiError::from)?;
        let tasks = self.tasks().await.list(&ns);
        let processes = futures::future::join_all(tasks.into_iter().map(|task| async move {
            match task {
                TaskRef::Exited(exited) => process_from_exit(&exited),
                TaskRef::Live(live) => self.init_state(&live).await,
            }
        }))
        .await;
        let reply = ListTasksResponse {
            tasks: processes
                .into_iter()
                .filter(|p| filter.matches(&ProcessFields(p)))
                .collect(),
        };
        reply::ensure_fits("tasks list", &reply)?;
        Ok(reply)
    }

    /// The init process of a live task for a listing: a shim that fails or is slow is
    /// reported UNKNOWN rather than holding up or failing the whole list.
    async fn init_state(&self, task: &Arc<LiveTask>) -> Process {
        let asked = tokio::time::timeout(
            PER_SHIM_TIMEOUT,
            task.client().state(shim::StateRequest {
                id: task.id.clone(),
                exec_id: String::new(),
            }),
        )
        .await;
        match asked {
            Ok(Ok(state)) => process_from_state(&task.id, "", state.into_inner()),
            Ok(Err(status)) => match self.tasks().await.call_failed(task, status).await {
                Ok(exited) => process_from_exit(&exited),
                Err(e) => {
                    tracing::warn!(id = %task.id, error = %e, "listing: the shim failed to report");
                    unknown_process(&task.id)
                }
            },
            Err(_) => {
                tracing::warn!(id = %task.id, "listing: the shim did not answer in time");
                unknown_process(&task.id)
            }
        }
    }

    async fn do_kill(&self, req: Request<KillRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let already_finished = |exited: &ExitedTask| {
            TaskError::NotFound(format!(
                "task {}: process already finished (exit status {})",
                exited.id, exited.exit.exit_status
            ))
        };
        let task = match self.tasks().await.lookup(&ns, &req.container_id)? {
            TaskRef::Live(task) => task,
            TaskRef::Exited(exited) => return Err(already_finished(&exited)),
        };
        self.call(
            &task,
            |mut c| async move {
                c.kill(shim::KillRequest {
                    id: req.container_id,
                    exec_id: req.exec_id,
                    signal: req.signal,
                    all: req.all,
                })
                .await
            },
            |exited| Err(already_finished(exited)),
        )
        .await
    }

    async fn do_exec(&self, req: Request<ExecProcessRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        if req.exec_id.is_empty() {
            return Err(TaskError::InvalidArgument("exec_id must be set".into()));
        }
        exec_id(&req.exec_id)?;
        if req.spec.is_none() {
            return Err(TaskError::InvalidArgument(format!(
                "exec {}: a process spec must be set",
                req.exec_id
            )));
        }
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        // Refuse a duplicate here too, so the answer does not depend on the shim.
        let existing = task
            .client()
            .state(shim::StateRequest {
                id: req.container_id.clone(),
                exec_id: req.exec_id.clone(),
            })
            .await;
        if existing.is_ok() {
            return Err(TaskError::AlreadyExists(format!(
                "task {}: exec {} already exists",
                req.container_id, req.exec_id
            )));
        }
        self.call(
            &task,
            |mut c| async move {
                c.exec(shim::ExecProcessRequest {
                    id: req.container_id,
                    exec_id: req.exec_id,
                    terminal: req.terminal,
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    spec: req.spec,
                })
                .await
            },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_resize_pty(&self, req: Request<ResizePtyRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        self.call(
            &task,
            |mut c| async move {
                c.resize_pty(shim::ResizePtyRequest {
                    id: req.container_id,
                    exec_id: req.exec_id,
                    width: req.width,
                    height: req.height,
                })
                .await
            },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_close_io(&self, req: Request<CloseIoRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        self.call(
            &task,
            |mut c| async move {
                c.close_io(shim::CloseIoRequest {
                    id: req.container_id,
                    exec_id: req.exec_id,
                    stdin: req.stdin,
                })
                .await
            },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_pause(&self, req: Request<PauseTaskRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let id = req.into_inner().container_id;
        task_id(&id)?;
        let task = self.tasks().await.live(&ns, &id)?;
        self.call(
            &task,
            |mut c| async move { c.pause(shim::PauseRequest { id }).await },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_resume(&self, req: Request<ResumeTaskRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let id = req.into_inner().container_id;
        task_id(&id)?;
        let task = self.tasks().await.live(&ns, &id)?;
        self.call(
            &task,
            |mut c| async move { c.resume(shim::ResumeRequest { id }).await },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_list_pids(&self, req: Request<ListPidsRequest>) -> TaskResult<ListPidsResponse> {
        let ns = request::namespace(&req)?;
        let id = req.into_inner().container_id;
        task_id(&id)?;
        let task = self.tasks().await.live(&ns, &id)?;
        let reply = self
            .call(
                &task,
                |mut c| async move { c.pids(shim::PidsRequest { id }).await },
                |exited| Err(gone(exited)),
            )
            .await?;
        Ok(ListPidsResponse {
            processes: reply.processes,
        })
    }

    async fn do_update(&self, req: Request<UpdateTaskRequest>) -> TaskResult<()> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        let task = self.tasks().await.live(&ns, &req.container_id)?;
        self.call(
            &task,
            |mut c| async move {
                c.update(shim::UpdateTaskRequest {
                    id: req.container_id,
                    resources: req.resources,
                    annotations: req.annotations,
                })
                .await
            },
            |exited| Err(gone(exited)),
        )
        .await
    }

    async fn do_metrics(&self, req: Request<MetricsRequest>) -> TaskResult<MetricsResponse> {
        let ns = request::namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(ApiError::from)?;
        let live: Vec<Arc<LiveTask>> = self
            .tasks()
            .await
            .list(&ns)
            .into_iter()
            .filter_map(|task| match task {
                TaskRef::Live(live) => Some(live),
                TaskRef::Exited(_) => None,
            })
            .filter(|live| {
                filter.matches(&ProcessFields(&Process {
                    container_id: live.id.clone(),
                    ..Process::default()
                }))
            })
            .collect();
        let samples = futures::future::join_all(live.iter().map(|task| async move {
            let asked = tokio::time::timeout(
                PER_SHIM_TIMEOUT,
                task.client().stats(shim::StatsRequest {
                    id: task.id.clone(),
                }),
            )
            .await;
            match asked {
                Ok(Ok(stats)) => Some(Metric {
                    timestamp: reply::timestamp(SystemTime::now()),
                    id: task.id.clone(),
                    data: stats.into_inner().stats,
                }),
                Ok(Err(status)) => {
                    tracing::warn!(id = %task.id, %status, "metrics: the shim failed to report");
                    None
                }
                Err(_) => {
                    tracing::warn!(id = %task.id, "metrics: the shim did not answer in time");
                    None
                }
            }
        }))
        .await;
        let reply = MetricsResponse {
            metrics: samples.into_iter().flatten().collect(),
        };
        reply::ensure_fits("tasks metrics", &reply)?;
        Ok(reply)
    }

    async fn do_wait(&self, req: Request<WaitRequest>) -> TaskResult<WaitResponse> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        task_id(&req.container_id)?;
        exec_id(&req.exec_id)?;
        let exec = req.exec_id.clone();
        let exited_wait = |exited: &ExitedTask| {
            exited_process(exited, &exec).map(|p| WaitResponse {
                exit_status: p.exit_status,
                exited_at: p.exited_at,
            })
        };
        let task = match self.tasks().await.lookup(&ns, &req.container_id)? {
            TaskRef::Live(task) => task,
            TaskRef::Exited(exited) => return exited_wait(&exited),
        };
        let reply = self
            .call(
                &task,
                |mut c| async move {
                    c.wait(shim::WaitRequest {
                        id: req.container_id,
                        exec_id: req.exec_id,
                    })
                    .await
                    .map(|r| {
                        r.map(|w| WaitResponse {
                            exit_status: w.exit_status,
                            exited_at: w.exited_at,
                        })
                    })
                },
                exited_wait,
            )
            .await?;
        Ok(reply)
    }
}

/// The process of an exited task: its init process (exec processes went with the shim).
fn exited_process(exited: &ExitedTask, exec_id: &str) -> TaskResult<Process> {
    if exec_id.is_empty() {
        Ok(process_from_exit(exited))
    } else {
        Err(TaskError::NotFound(format!(
            "task {}: exec {exec_id}: not found (the task has exited)",
            exited.id
        )))
    }
}

#[tonic::async_trait]
impl Tasks for TasksService {
    async fn create(
        &self,
        req: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        Ok(Response::new(self.do_create(req).await?))
    }

    async fn start(&self, req: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        Ok(Response::new(self.do_start(req).await?))
    }

    async fn delete(
        &self,
        req: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(self.do_delete(req).await?))
    }

    async fn delete_process(
        &self,
        req: Request<DeleteProcessRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(self.do_delete_process(req).await?))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(self.do_get(req).await?))
    }

    async fn list(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Ok(Response::new(self.do_list(req).await?))
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<()>, Status> {
        self.do_kill(req).await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, req: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        self.do_exec(req).await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, req: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        self.do_resize_pty(req).await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, req: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        self.do_close_io(req).await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, req: Request<PauseTaskRequest>) -> Result<Response<()>, Status> {
        self.do_pause(req).await?;
        Ok(Response::new(()))
    }

    async fn resume(&self, req: Request<ResumeTaskRequest>) -> Result<Response<()>, Status> {
        self.do_resume(req).await?;
        Ok(Response::new(()))
    }

    async fn list_pids(
        &self,
        req: Request<ListPidsRequest>,
    ) -> Result<Response<ListPidsResponse>, Status> {
        Ok(Response::new(self.do_list_pids(req).await?))
    }

    async fn checkpoint(
        &self,
        _req: Request<CheckpointTaskRequest>,
    ) -> Result<Response<CheckpointTaskResponse>, Status> {
        Err(TaskError::Unimplemented(
            "checkpoint is not supported by Berth: tasks cannot be checkpointed (no CRIU support)"
                .into(),
        )
        .into())
    }

    async fn update(&self, req: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        self.do_update(req).await?;
        Ok(Response::new(()))
    }

    async fn metrics(
        &self,
        req: Request<MetricsRequest>,
    ) -> Result<Response<MetricsResponse>, Status> {
        Ok(Response::new(self.do_metrics(req).await?))
    }

    async fn wait(&self, req: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        Ok(Response::new(self.do_wait(req).await?))
    }
}

#[cfg(test)]
mod tests;
