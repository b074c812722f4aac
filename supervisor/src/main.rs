//! berthd: the Berth daemon. Serves containerd's v1 gRPC API on a unix socket over the
//! content store, the overlayfs snapshotter and (later) the per-container shims.

mod config;
mod error;
mod events;
mod filters;
mod gc;
mod ident;
mod metadata;
mod request;
mod rpc_log;
mod server;
mod services;
mod state;
mod tasks;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_stream::wrappers::UnixListenerStream;

/// Command-line flags; each has a key of the same name in the config file.
#[derive(Debug, Parser)]
#[command(name = "berthd", version, about = "Berth container supervisor daemon")]
struct Args {
    /// Persistent root (content, snapshots, metadata) [default: /var/lib/berth]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Ephemeral state directory (sockets, task bundles) [default: /run/berth]
    #[arg(long)]
    state: Option<PathBuf>,
    /// gRPC unix socket path [default: <state>/berthd.sock]
    #[arg(long, short = 'a')]
    address: Option<PathBuf>,
    /// Config file (TOML) [default: /etc/berth/config.toml, if present]
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `berthd=trace` [default: info]
    #[arg(long, short = 'l')]
    log_level: Option<String>,
    /// Largest blob a client may write, in bytes [default: 64 GiB]
    #[arg(long)]
    max_blob_size: Option<u64>,
    /// The berth-shim binary tasks run under [default: berth-shim next to berthd, else on PATH]
    #[arg(long)]
    shim_binary: Option<PathBuf>,
    /// Shims kept started ahead of need, so a task create does not wait for one; 0 for
    /// none [default: 1]
    #[arg(long)]
    spare_shims: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => config::FileConfig::load(path, true)?,
        None => config::FileConfig::load(std::path::Path::new(config::DEFAULT_CONFIG), false)?,
    };
    let settings = config::Settings::merge(
        config::Flags {
            root: args.root,
            state: args.state,
            address: args.address,
            log_level: args.log_level,
            max_blob_size: args.max_blob_size,
            shim_binary: args.shim_binary,
            spare_shims: args.spare_shims,
        },
        file,
    );
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("bad --log-level {:?}", settings.log_level))?;
    // Colours only on a terminal: a log file or journal gets plain text to search.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(settings))
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    let address = settings.address.clone();
    let daemon = state::Daemon::open(settings.clone()).context("opening stores")?;
    // Serve at once: task requests wait until every shim has been found again, everything
    // else is answered meanwhile. A client polling a restarted berthd gets its answer the
    // moment recovery is done instead of failing to connect until then.
    let listener = server::listen(&address)?;
    tracing::info!(
        address = %address.display(),
        root = %settings.root.display(),
        state = %settings.state.display(),
        shim = %settings.shim_binary.display(),
        version = env!("CARGO_PKG_VERSION"),
        "berthd serving"
    );
    tokio::spawn(recover_then_collect(daemon.clone()));
    let result = services::router(daemon.clone())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            shutdown_signal().await;
            // End event subscriptions, which would otherwise hold the server open.
            daemon.events.close();
        })
        .await;
    let _ = std::fs::remove_file(&address);
    result.context("serving gRPC")?;
    daemon.meta.flush().await.context("flushing metadata")?;
    tracing::info!("berthd stopped");
    Ok(())
}

/// Finds every task's shim again (concurrently), then collects what a crash may have left
/// behind (garbage collection runs after recovery, so nothing a task uses looks unused).
async fn recover_then_collect(daemon: std::sync::Arc<state::Daemon>) {
    let recovered = daemon
        .tasks
        .recover(|ns, id| {
            daemon
                .meta
                .get::<serde::de::IgnoredAny>(metadata::Kind::Container, ns, id)
                .map_or(true, |record| record.is_some())
        })
        .await;
    tracing::info!(?recovered, "task recovery done");
    daemon.tasks.refill_spares();
    match gc::collect(&daemon).await {
        Ok(report) => tracing::info!(?report, "startup garbage collection done"),
        Err(e) => tracing::warn!(error = %e, "startup garbage collection failed"),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutting down");
}
