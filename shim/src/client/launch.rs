//! `berth-shim start` (launch a task's shim) and `berth-shim delete` (clean up after a
//! shim that died), run as subprocesses with the agreed command lines.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::command::{self, Finished};
use crate::client::{check_socket_path, ClientError, ExitInfo};

/// How long `berth-shim start` may take (it returns once the shim listens).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `berth-shim delete` may take (it runs the runtime's forced delete).
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `berth-shim start` needs to launch the shim of one task.
#[derive(Debug, Clone)]
pub struct StartArgs {
    /// The `berth-shim` binary to run.
    pub shim_binary: PathBuf,
    /// The task's namespace.
    pub namespace: String,
    /// The task (container) id.
    pub id: String,
    /// The bundle directory, holding `config.json` and `rootfs/`.
    pub bundle: PathBuf,
    /// Where the shim is to listen.
    pub socket: PathBuf,
    /// berthd's API socket, where the shim publishes task events.
    pub publish_address: PathBuf,
    /// The runtime's state root (`runc --root`), under berthd's state dir.
    pub runtime_root: PathBuf,
    /// The runtime binary, if not the default (`runc`).
    pub runtime_binary: Option<PathBuf>,
    /// The shim's log filter, e.g. `info` or `debug`.
    pub log_level: Option<String>,
}

impl StartArgs {
    /// The arguments after the binary name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "start".into(),
            "--namespace".into(),
            self.namespace.clone().into(),
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--socket".into(),
            self.socket.clone().into(),
            "--publish-address".into(),
            self.publish_address.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
        ];
        if let Some(binary) = &self.runtime_binary {
            args.extend(["--runtime-binary".into(), binary.clone().into()]);
        }
        if let Some(level) = &self.log_level {
            args.extend(["--log-level".into(), level.clone().into()]);
        }
        args
    }
}

/// What `berth-shim delete` needs to clean up after a task whose shim is gone.
#[derive(Debug, Clone)]
pub struct DeleteArgs {
    /// The `berth-shim` binary to run.
    pub shim_binary: PathBuf,
    /// The task's namespace.
    pub namespace: String,
    /// The task (container) id.
    pub id: String,
    /// The bundle directory (removed by the command).
    pub bundle: PathBuf,
    /// The runtime's state root (`runc --root`).
    pub runtime_root: PathBuf,
    /// The runtime binary, if not the default (`runc`).
    pub runtime_binary: Option<PathBuf>,
}

impl DeleteArgs {
    /// The arguments after the binary name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "delete".into(),
            "--namespace".into(),
            self.namespace.clone().into(),
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
        ];
        if let Some(binary) = &self.runtime_binary {
            args.extend(["--runtime-binary".into(), binary.clone().into()]);
        }
        args
    }
}

/// Where a launched shim listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimAddress {
    /// The shim's unix socket path.
    pub socket: PathBuf,
}

/// The socket path `berth-shim start` printed: its first non-empty line, an absolute path
/// (a `unix://` prefix is accepted and dropped).
fn printed_socket(stdout: &str) -> Result<PathBuf, ClientError> {
    let bad = |detail: String| ClientError::BadReply {
        command: "start",
        detail,
    };
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .ok_or_else(|| bad("it printed no socket path".to_string()))?;
    let path = Path::new(line.strip_prefix("unix://").unwrap_or(line));
    if !path.is_absolute() {
        return Err(bad(format!("{line:?} is not an absolute socket path")));
    }
    Ok(path.to_path_buf())
}

/// Launches the shim of a task: runs `berth-shim start …`, which forks the daemon shim
/// (reparented away from berthd) and prints its socket once it listens. Idempotent: if a
/// shim already serves the socket, its address is returned.
pub async fn launch(args: &StartArgs) -> Result<ShimAddress, ClientError> {
    check_socket_path(&args.socket)?;
    let finished = command::run("start", &args.shim_binary, args.to_args(), START_TIMEOUT).await?;
    start_reply(&finished)
}

fn start_reply(finished: &Finished) -> Result<ShimAddress, ClientError> {
    if !finished.status.success() {
        return Err(finished.failure("start"));
    }
    Ok(ShimAddress {
        socket: printed_socket(&finished.stdout)?,
    })
}

/// Cleans up after a task whose shim is gone: runs `berth-shim delete …` (the runtime's
/// forced delete, unmounting the rootfs, removing the bundle) and returns how the task's
/// init process ended, as recorded in the bundle, or the synthetic unknown status.
pub async fn cleanup_dead(args: &DeleteArgs) -> Result<ExitInfo, ClientError> {
    let finished =
        command::run("delete", &args.shim_binary, args.to_args(), DELETE_TIMEOUT).await?;
    delete_reply(&finished)
}

fn delete_reply(finished: &Finished) -> Result<ExitInfo, ClientError> {
    if !finished.status.success() {
        return Err(finished.failure("delete"));
    }
    let line = finished
        .stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .ok_or_else(|| ClientError::BadReply {
            command: "delete",
            detail: "it printed no exit record".to_string(),
        })?;
    ExitInfo::from_json(line).map_err(|detail| ClientError::BadReply {
        command: "delete",
        detail,
    })
}

#[cfg(test)]
mod tests;
