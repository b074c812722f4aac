//! The daemon shim: everything behind the `berth-shim` binary.
//!
//! - [`launch::start`] is `berth-shim start`: it starts the daemon shim in a new session,
//!   waits until it listens, and prints its socket. [`launch::start_spare`] is
//!   `berth-shim spare`: the same for a [`spare`] shim, which gets its task later.
//! - [`daemon::run`] is the daemon itself: a child subreaper that serves the task API
//!   (`service`) on a unix socket with a single-threaded tokio runtime.
//! - [`cleanup::delete`] is `berth-shim delete`: cleaning up a task whose shim is gone.
//!
//! The daemon's pieces: `task` holds the container's processes and their life cycle,
//! `reaper` collects exit statuses, `stdio` opens and copies the client's streams,
//! [`events`] delivers task events to berthd, [`exit_file`] keeps the init's exit status in
//! the bundle.

#![warn(missing_docs)]

pub mod cleanup;
pub mod cli;
pub mod config;
pub mod daemon;
mod error;
pub mod events;
pub mod exit_file;
mod fd;
mod jobs;
pub mod launch;
mod logging;
mod metrics;
mod oom;
mod process;
mod reaper;
mod runtime_options;
mod service;
pub mod spare;
mod stdio;
mod task;

pub use config::{validate_namespace, DaemonConfig, RuntimeSettings, SpareConfig, TaskIdentity};
pub use error::ShimError;
