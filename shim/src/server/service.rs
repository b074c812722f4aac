//! The gRPC face of the shim: `containerd.task.v2.Task`, each call a thin translation onto
//! [`Task`] (which holds the logic) with errors mapped to status codes in one place.

use std::sync::Arc;

use berth_proto::containerd::task::v2::task_server::Task as TaskApi;
use berth_proto::containerd::task::v2::{
    CheckpointTaskRequest, CloseIoRequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use tonic::{Request, Response, Status};

use crate::server::spare::TaskCell;
use crate::server::task::Task;
use crate::server::ShimError;

/// The task API served on the shim's socket.
#[derive(Debug, Clone)]
pub(crate) struct TaskService {
    cell: Arc<TaskCell>,
}

impl TaskService {
    /// Serves the task in `cell` (a spare's cell is empty until it is assigned a task).
    pub(crate) fn new(cell: Arc<TaskCell>) -> TaskService {
        TaskService { cell }
    }

    /// The task, or FailedPrecondition for a spare that has none yet.
    // The error type is the one tonic's generated trait requires.
    #[allow(clippy::result_large_err)]
    fn task(&self) -> Result<&Arc<Task>, Status> {
        self.cell.task().map_err(Status::from)
    }
}

/// Logs a failed call and turns it into its gRPC status.
// The result type is the one tonic's generated trait requires.
#[allow(clippy::result_large_err)]
fn reply<T>(call: &'static str, result: Result<T, ShimError>) -> Result<Response<T>, Status> {
    match result {
        Ok(value) => Ok(Response::new(value)),
        Err(error) => {
            tracing::warn!(call, %error, "request failed");
            Err(error.into())
        }
    }
}

#[tonic::async_trait]
impl TaskApi for TaskService {
    async fn state(
        &self,
        request: Request<StateRequest>,
    ) -> Result<Response<StateResponse>, Status> {
        let request = request.into_inner();
        reply("State", self.task()?.state(&request.id, &request.exec_id))
    }

    async fn create(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let result = self.task()?.create(request.into_inner()).await;
        reply("Create", result.map(|pid| CreateTaskResponse { pid }))
    }

    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let request = request.into_inner();
        let result = self.task()?.start(&request.id, &request.exec_id).await;
        reply("Start", result.map(|pid| StartResponse { pid }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        reply(
            "Delete",
            self.task()?.delete(&request.id, &request.exec_id).await,
        )
    }

    async fn pids(&self, request: Request<PidsRequest>) -> Result<Response<PidsResponse>, Status> {
        reply("Pids", self.task()?.pids(&request.into_inner().id).await)
    }

    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        reply(
            "Pause",
            self.task()?
                .set_paused(&request.into_inner().id, true)
                .await,
        )
    }

    async fn resume(&self, request: Request<ResumeRequest>) -> Result<Response<()>, Status> {
        reply(
            "Resume",
            self.task()?
                .set_paused(&request.into_inner().id, false)
                .await,
        )
    }

    async fn checkpoint(
        &self,
        _request: Request<CheckpointTaskRequest>,
    ) -> Result<Response<()>, Status> {
        reply(
            "Checkpoint",
            Err(ShimError::Unimplemented(
                "checkpointing a task is not supported by berth-shim".into(),
            )),
        )
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<()>, Status> {
        reply("Kill", self.task()?.kill(request.into_inner()).await)
    }

    async fn exec(&self, request: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        reply("Exec", self.task()?.exec(request.into_inner()).await)
    }

    async fn resize_pty(&self, request: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        reply(
            "ResizePty",
            self.task()?
                .resize_pty(&request.id, &request.exec_id, request.width, request.height),
        )
    }

    async fn close_io(&self, request: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        reply(
            "CloseIO",
            self.task()?
                .close_io(&request.id, &request.exec_id, request.stdin),
        )
    }

    async fn update(&self, request: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        reply("Update", self.task()?.update(request.into_inner()).await)
    }

    async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let request = request.into_inner();
        reply(
            "Wait",
            self.task()?.wait(&request.id, &request.exec_id).await,
        )
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let result = self.task()?.stats(&request.into_inner().id).await;
        reply(
            "Stats",
            result.map(|stats| StatsResponse { stats: Some(stats) }),
        )
    }

    async fn connect(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectResponse>, Status> {
        reply("Connect", self.task()?.connect(&request.into_inner().id))
    }

    async fn shutdown(&self, request: Request<ShutdownRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        reply("Shutdown", self.task()?.shutdown(&request.id, request.now))
    }
}
