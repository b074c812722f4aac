//! The daemon shim: what `berth-shim start` (or `berth-shim spare`) leaves running.
//!
//! It makes itself a child subreaper, logs to `bundle/shim.log`, writes `bundle/shim.pid`,
//! binds the task API socket (mode 0600 in a 0700 directory), tells `start` it is ready,
//! and serves until Shutdown allows it to exit. Everything runs on one thread (a
//! current-thread tokio runtime); runtime commands run on a small blocking pool whose
//! threads go away when idle, so an idle shim is one thread and little memory. A spare
//! shim does the task-specific steps (log, pid file, working directory) only when berthd
//! assigns it a task (see [`crate::server::spare`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berth::shim::v1::spare_server::SpareServer;
use berth_proto::containerd::task::v2::task_server::TaskServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use crate::server::events::EventPublisher;
use crate::server::reaper::Reaper;
use crate::server::service::TaskService;
use crate::server::spare::{SpareService, SupervisorWatch, TaskCell};
use crate::server::task::Task;
use crate::server::{logging, DaemonConfig, ShimError, SpareConfig};

/// What a daemon shim is started as.
#[derive(Debug, Clone)]
pub enum DaemonMode {
    /// The shim of one task, known from the start (`berth-shim start`).
    Task(DaemonConfig),
    /// A spare waiting for berthd to assign it a task (`berth-shim spare`).
    Spare(SpareConfig),
}

impl DaemonMode {
    /// The socket the daemon binds.
    pub fn socket(&self) -> &Path {
        match self {
            DaemonMode::Task(config) => &config.socket,
            DaemonMode::Spare(config) => &config.socket,
        }
    }
}

/// File the shim writes its own pid to, in the bundle.
pub const SHIM_PID_FILE: &str = "shim.pid";

/// Readiness events taken from the kernel per poll: a shim watches a handful of
/// descriptors, and tokio's default (1024) costs memory for nothing.
const MAX_IO_EVENTS_PER_TICK: usize = 64;

/// Most runtime commands running at once.
const MAX_BLOCKING_THREADS: usize = 8;

/// How long an idle blocking thread lingers before it exits.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Stack of blocking threads (they run the runtime binary and small file operations).
const BLOCKING_THREAD_STACK: usize = 512 * 1024;

/// How long in-flight requests may take to finish once Shutdown was accepted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long the shim tries to deliver its last events before it exits.
const FINAL_EVENTS_WAIT: Duration = Duration::from_secs(3);

/// The readiness message `start` waits for on the ready pipe.
pub(crate) const READY_MESSAGE: &str = "ok";

/// Prefix of the failure message on the ready pipe.
pub(crate) const FAILED_PREFIX: &str = "error: ";

/// The write end of `start`'s readiness pipe: written once, then closed.
struct Readiness(Option<File>);

impl Readiness {
    fn report(&mut self, message: &str) {
        if let Some(mut pipe) = self.0.take() {
            // `start` may be gone already: then nobody needs the message.
            let _ = writeln!(pipe, "{message}");
        }
    }
}

/// Runs the daemon shim in `mode` until it is told to exit. `ready` is the pipe to report
/// readiness (or the reason for failing) on.
pub fn run(mode: DaemonMode, ready: Option<OwnedFd>) -> Result<(), ShimError> {
    let mut readiness = Readiness(ready.map(File::from));
    let result = run_until_shutdown(&mode, &mut readiness);
    if let Err(error) = &result {
        tracing::error!(%error, "the shim failed");
        readiness.report(&format!("{FAILED_PREFIX}{error}"));
    }
    result
}

fn run_until_shutdown(mode: &DaemonMode, readiness: &mut Readiness) -> Result<(), ShimError> {
    limit_malloc_arenas();
    if let DaemonMode::Task(config) = mode {
        logging::init(&config.task, config.log_level)?;
    }
    Reaper::become_subreaper().map_err(ShimError::io("become a child subreaper", ""))?;
    if let DaemonMode::Task(config) = mode {
        // A pid written as JSON is just its digits.
        berth_runtime::write_json_atomically(
            &config.task.bundle.join(SHIM_PID_FILE),
            &std::process::id(),
        )?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_io_events_per_tick(MAX_IO_EVENTS_PER_TICK)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .thread_stack_size(BLOCKING_THREAD_STACK)
        .build()
        .map_err(ShimError::io("start the async runtime", ""))?;
    // On the heap: the server future is large, and the main stack stays small.
    runtime.block_on(Box::pin(serve(mode, readiness)))
}

/// The task of `config`, with its event publisher running.
pub(crate) fn start_task(config: &DaemonConfig, reaper: &Arc<Reaper>) -> Arc<Task> {
    let events = Arc::new(EventPublisher::new(
        &config.task.namespace,
        &config.publish_address,
    ));
    let publisher = events.clone();
    tokio::spawn(async move { publisher.run().await });
    Arc::new(Task::new(
        config.task.clone(),
        config.runtime.clone(),
        config.socket.clone(),
        reaper.clone(),
        events,
    ))
}

async fn serve(mode: &DaemonMode, readiness: &mut Readiness) -> Result<(), ShimError> {
    let reaper = Arc::new(Reaper::default());
    let (cell, spare, supervisor) = match mode {
        DaemonMode::Task(config) => (
            Arc::new(TaskCell::holding(start_task(config, &reaper))),
            None,
            None,
        ),
        DaemonMode::Spare(config) => {
            let cell = Arc::new(TaskCell::default());
            let service = SpareService::new(config.clone(), cell.clone(), reaper.clone());
            let watch = SupervisorWatch::open(config.supervisor_pid)?;
            (cell, Some(SpareServer::new(service)), Some(watch))
        }
    };
    // Registered before anything is spawned, so no exit goes unnoticed.
    let mut child_exits =
        signal(SignalKind::child()).map_err(ShimError::io("watch for SIGCHLD", ""))?;
    let listener = bind(mode.socket())?;

    let reaped = cell.clone();
    tokio::spawn(async move {
        loop {
            reaper.reap_exited(|pid, status| {
                // A spare has no children before it has a task.
                if let Some(task) = reaped.get() {
                    task.on_exit(pid, status);
                }
            });
            if child_exits.recv().await.is_none() {
                return;
            }
        }
    });

    readiness.report(READY_MESSAGE);
    tracing::info!(socket = %mode.socket().display(), pid = std::process::id(), "shim serving");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(TaskServer::new(TaskService::new(cell.clone())))
        .add_optional_service(spare)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    let shutdown = async { cell.assigned().await.shutdown_requested().await };
    let abandoned = async {
        if let Some(supervisor) = &supervisor {
            supervisor.exited().await;
            if cell.get().is_none() {
                tracing::info!("berthd exited before it gave this spare shim a task");
                return;
            }
        }
        std::future::pending::<()>().await
    };
    // Either way the server stops taking calls and finishes the ones in flight.
    let stop_requested = async {
        tokio::select! {
            () = shutdown => {}
            () = abandoned => {}
        }
    };
    let served = tokio::select! {
        served = &mut server => served,
        () = stop_requested => {
            let _ = stop.send(());
            tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .unwrap_or(Ok(()))
        }
    };
    let socket: PathBuf = match cell.get() {
        Some(task) => {
            task.finish_cleanup().await;
            let events = task.events();
            if !events.flush(FINAL_EVENTS_WAIT).await {
                tracing::warn!(
                    undelivered = events.pending(),
                    "exiting with events berthd never took"
                );
            }
            task.socket().to_path_buf()
        }
        None => mode.socket().to_path_buf(),
    };
    let _ = std::fs::remove_file(&socket);
    tracing::info!("shim exiting");
    served.map_err(|e| ShimError::Internal(format!("serving the task API failed: {e}")))
}

/// Binds the task API socket: its directory 0700, the socket 0600, a stale socket file
/// (left by a dead shim) replaced, a live one refused.
fn bind(socket: &Path) -> Result<UnixListener, ShimError> {
    if let Some(dir) = socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(ShimError::io("create socket directory", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(ShimError::io("set mode 0700 on", dir))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(ShimError::AlreadyExists(format!(
                "another shim already listens on {}",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(ShimError::io("remove stale socket", socket))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(ShimError::io("bind task API socket", socket))?;
    // The directory is private, so the moment before the mode is set exposes nothing.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(ShimError::io("set mode 0600 on", socket))?;
    listener
        .set_nonblocking(true)
        .map_err(ShimError::io("set non-blocking", socket))?;
    UnixListener::from_std(listener).map_err(ShimError::io("register", socket))
}

/// One malloc arena for the whole process: a shim is small and mostly idle, and per-thread
/// arenas would keep memory of short-lived blocking threads.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
