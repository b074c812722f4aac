//! Berth's per-container shim.
//!
//! Two halves share this crate:
//! - [`client`]: what berthd uses to launch shims (`berth-shim start`),
//!   connect to their task API and clean up after dead ones
//!   (`berth-shim delete`). It never execs the OCI runtime.
//! - `server` (feature `server`, on by default): the daemon shim behind the
//!   `berth-shim` binary. It serves `containerd.task.v2.Task` on a unix
//!   socket, drives runc through `berth-runtime`, reaps the container's
//!   processes and publishes task events back to berthd.

pub mod client;

#[cfg(feature = "server")]
pub mod server;
