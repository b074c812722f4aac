//! berth-runtime: drives an OCI runtime (runc, crun) through its command line, and builds the
//! OCI bundles it runs.
//!
//! - [`Runtime`] runs `create`, `start`, `state`, `kill`, `delete`, `exec`, `ps`, `pause`,
//!   `resume`, `update`, `events --stats` and `--version`, with one typed [`Error`] that keeps
//!   the runtime's own message. It is synchronous; clone it into a blocking task from async code.
//! - [`spec`] builds `config.json`: containerd-like defaults, an image's config applied with the
//!   user resolved inside the rootfs, and small edits; [`write_bundle`] puts it on disk safely.
//! - [`ConsoleSocket`] receives the pty of a container that has a terminal.
//!
//! The crate knows nothing of gRPC or namespaces; the `oci_spec` crate is re-exported so that
//! users share its types.

#![warn(missing_docs)]

mod binary;
mod bundle;
mod console;
mod driver;
mod error;
pub mod exec_fifo;
mod id;
mod invocation;
mod monitor;
mod opts;
mod pid_file;
mod runtime_log;
pub mod spec;
mod state;
mod stats;
mod stdio;
mod version;

pub use oci_spec;

pub use bundle::{
    read_bundle_spec, write_bundle, write_json_atomically, write_process_json, BUNDLE_DIR_MODE,
    CONFIG_FILE,
};
pub use console::ConsoleSocket;
pub use driver::Runtime;
pub use error::{Error, Result};
pub use id::{validate_container_id, MAX_ID_LEN};
pub use monitor::{DirectMonitor, ProcessMonitor};
pub use opts::{CreateOpts, ExecOpts, RuntimeConfig};
pub use pid_file::read_pid_file;
pub use state::{State, Status};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuThrottling, CpuUsage, HugetlbStats, MemoryEntry,
    MemoryStats, PidsStats, Stats,
};
pub use stdio::Stdio;
pub use version::Version;
