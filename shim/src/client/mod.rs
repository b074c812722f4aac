//! The berthd side of the shim: launching shims (`berth-shim start`), keeping a spare one
//! ready (`berth-shim spare`), connecting to their task API over a unix socket, and
//! cleaning up after shims that died (`berth-shim delete`).
//!
//! Nothing here execs the OCI runtime: berthd links this half of the crate only, and
//! everything that touches runc happens inside the `berth-shim` process.

mod command;
mod connect;
mod error;
mod exit;
mod launch;
mod rfc3339;
mod socket;
mod spare;

pub use connect::{connect, connect_with_timeout, CONNECT_TIMEOUT};
pub use error::ClientError;
pub use exit::{ExitInfo, UNKNOWN_EXIT_STATUS};
pub use launch::{
    cleanup_dead, launch, DeleteArgs, ShimAddress, StartArgs, DELETE_TIMEOUT, START_TIMEOUT,
};
pub use rfc3339::{format_rfc3339, parse_rfc3339};
pub use socket::{check_socket_path, socket_path, MAX_SOCKET_PATH_LEN, SOCKET_DIR};
pub use spare::{launch_spare, Assignment, SpareArgs, SpareShim};

/// The gRPC client of one shim's `containerd.task.v2.Task` service.
pub type TaskClient =
    berth_proto::containerd::task::v2::task_client::TaskClient<tonic::transport::Channel>;
