//! The daemon shim: what `berth-shim start` leaves running for one task.
//!
//! It makes itself a child subreaper, logs to `bundle/shim.log`, writes `bundle/shim.pid`,
//! binds the task API socket (mode 0600 in a 0700 directory), tells `start` it is ready,
//! and serves until Shutdown allows it to exit. Everything runs on one thread (a
//! current-thread tokio runtime); runtime commands run on a small blocking pool whose
//! threads go away when idle, so an idle shim is one thread and little memory.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::containerd::task::v2::task_server::TaskServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use crate::server::events::EventPublisher;
use crate::server::reaper::Reaper;
use crate::server::service::TaskService;
use crate::server::task::Task;
use crate::server::{logging, DaemonConfig, ShimError};

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

/// Runs the daemon shim for `config` until it is told to exit. `ready` is the pipe to
/// report readiness (or the reason for failing) on.
pub fn run(config: DaemonConfig, ready: Option<OwnedFd>) -> Result<(), ShimError> {
    let mut readiness = Readiness(ready.map(File::from));
    let result = run_until_shutdown(&config, &mut readiness);
    if let Err(error) = &result {
        tracing::error!(%error, "the shim failed");
        readiness.report(&format!("{FAILED_PREFIX}{error}"));
    }
    result
}

fn run_until_shutdown(config: &DaemonConfig, readiness: &mut Readiness) -> Result<(), ShimError> {
    limit_malloc_arenas();
    logging::init(&config.task, config.log_level)?;
    Reaper::become_subreaper().map_err(ShimError::io("become a child subreaper", ""))?;
    // A pid written as JSON is just its digits.
    berth_runtime::write_json_atomically(
        &config.task.bundle.join(SHIM_PID_FILE),
        &std::process::id(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_io_events_per_tick(MAX_IO_EVENTS_PER_TICK)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .thread_stack_size(BLOCKING_THREAD_STACK)
        .build()
        .map_err(ShimError::io("start the async runtime", ""))?;
    // On the heap: the server future is large, and the main stack stays small.
    runtime.block_on(Box::pin(serve(config, readiness)))
}

async fn serve(config: &DaemonConfig, readiness: &mut Readiness) -> Result<(), ShimError> {
    let reaper = Arc::new(Reaper::default());
    let events = Arc::new(EventPublisher::new(
        &config.task.namespace,
        &config.publish_address,
    ));
    let task = Arc::new(Task::new(
        config.task.clone(),
        config.runtime.clone(),
        config.socket.clone(),
        reaper.clone(),
        events.clone(),
    ));
    // Registered before anything is spawned, so no exit goes unnoticed.
    let mut child_exits =
        signal(SignalKind::child()).map_err(ShimError::io("watch for SIGCHLD", ""))?;
    let listener = bind(&config.socket)?;

    let reaped_task = task.clone();
    tokio::spawn(async move {
        loop {
            reaper.reap_exited(|pid, status| reaped_task.on_exit(pid, status));
            if child_exits.recv().await.is_none() {
                return;
            }
        }
    });
    let publisher = events.clone();
    tokio::spawn(async move { publisher.run().await });

    readiness.report(READY_MESSAGE);
    tracing::info!(socket = %config.socket.display(), pid = std::process::id(), "shim serving");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(TaskServer::new(TaskService::new(task.clone())))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    let served = tokio::select! {
        served = &mut server => served,
        () = task.shutdown_requested() => {
            let _ = stop.send(());
            tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .unwrap_or(Ok(()))
        }
    };
    task.finish_cleanup().await;
    if !events.flush(FINAL_EVENTS_WAIT).await {
        tracing::warn!(
            undelivered = events.pending(),
            "exiting with events berthd never took"
        );
    }
    let _ = std::fs::remove_file(&config.socket);
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
