//! Spare shims, from berthd's side: launching one (`berth-shim spare`) and connecting to it
//! ahead of need, then giving it a task with `Assign` (see `berth_shim::server::spare`).
//! Creating a task with a spare skips the launch and the connection handshake.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use berth_proto::berth::shim::v1::spare_client::SpareClient;
use berth_proto::berth::shim::v1::AssignRequest;

use crate::client::command;
use crate::client::connect::open_channel;
use crate::client::launch::START_TIMEOUT;
use crate::client::{check_socket_path, ClientError, TaskClient, CONNECT_TIMEOUT};

/// `berth-shim spare`'s flags.
#[derive(Debug, Clone)]
pub struct SpareArgs {
    /// The `berth-shim` binary.
    pub shim_binary: PathBuf,
    /// The spare's own socket.
    pub socket: PathBuf,
    /// berthd's socket, where the task's events will be published.
    pub publish_address: PathBuf,
    /// berthd's pid, which the spare watches.
    pub supervisor_pid: u32,
    /// The assigned task's log level; `None` for the shim's default.
    pub log_level: Option<String>,
}

impl SpareArgs {
    /// The command line after the binary.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "spare".into(),
            "--socket".into(),
            self.socket.clone().into(),
            "--publish-address".into(),
            self.publish_address.clone().into(),
            "--supervisor-pid".into(),
            self.supervisor_pid.to_string().into(),
        ];
        if let Some(level) = &self.log_level {
            args.extend(["--log-level".into(), level.clone().into()]);
        }
        args
    }
}

/// The task a spare is given.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Namespace of the task.
    pub namespace: String,
    /// Container id of the task.
    pub id: String,
    /// The task's bundle (already written).
    pub bundle: PathBuf,
    /// The runtime's state root for the namespace.
    pub runtime_root: PathBuf,
    /// The task's socket path, which the spare's socket is renamed to.
    pub socket: PathBuf,
}

/// A running spare shim with an open connection, ready to be given a task.
#[derive(Debug)]
pub struct SpareShim {
    socket: PathBuf,
    pid: u32,
    channel: tonic::transport::Channel,
}

impl SpareShim {
    /// The spare's own socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The spare's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Gives the spare its task; returns a client for the task API on the connection
    /// already open. On failure the spare has no task and should be stopped.
    pub async fn assign(self, task: &Assignment) -> Result<TaskClient, ClientError> {
        check_socket_path(&task.socket)?;
        let request = AssignRequest {
            namespace: task.namespace.clone(),
            id: task.id.clone(),
            bundle: task.bundle.display().to_string(),
            runtime_root: task.runtime_root.display().to_string(),
            runtime_binary: String::new(),
            socket: task.socket.display().to_string(),
        };
        let failed = |detail: String| ClientError::Assign {
            socket: self.socket.clone(),
            id: task.id.clone(),
            detail,
        };
        let answer = tokio::time::timeout(
            CONNECT_TIMEOUT,
            SpareClient::new(self.channel.clone()).assign(request),
        )
        .await
        .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|status| failed(status.message().to_string()))?;
        let pid = answer.into_inner().pid;
        if pid != self.pid {
            return Err(failed(format!(
                "it answered as pid {pid}, but was started as {}",
                self.pid
            )));
        }
        Ok(TaskClient::new(self.channel))
    }
}

/// Starts a spare shim and connects to it.
pub async fn launch_spare(args: &SpareArgs) -> Result<SpareShim, ClientError> {
    check_socket_path(&args.socket)?;
    let finished = command::run("spare", &args.shim_binary, args.to_args(), START_TIMEOUT).await?;
    if !finished.status.success() {
        return Err(finished.failure("spare"));
    }
    let (socket, pid) = spare_reply(&finished.stdout)?;
    let channel = open_channel(&socket, CONNECT_TIMEOUT).await?;
    Ok(SpareShim {
        socket,
        pid,
        channel,
    })
}

/// The socket and pid `berth-shim spare` printed, one per line.
fn spare_reply(stdout: &str) -> Result<(PathBuf, u32), ClientError> {
    let bad = |detail: String| ClientError::BadReply {
        command: "spare",
        detail,
    };
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let socket = PathBuf::from(
        lines
            .next()
            .ok_or_else(|| bad("it printed nothing".into()))?,
    );
    if !socket.is_absolute() {
        return Err(bad(format!(
            "{} is not an absolute socket path",
            socket.display()
        )));
    }
    let pid = lines
        .next()
        .and_then(|line| line.parse::<u32>().ok())
        .filter(|pid| *pid > 0)
        .ok_or_else(|| bad(format!("no pid after the socket in {stdout:?}")))?;
    Ok((socket, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_is_a_socket_then_a_pid() {
        let (socket, pid) = spare_reply("/run/berth/s/spare-1.sock\n4242\n").unwrap();
        assert_eq!(socket, PathBuf::from("/run/berth/s/spare-1.sock"));
        assert_eq!(pid, 4242);
        for bad in [
            "",
            "relative.sock\n1\n",
            "/s.sock\n",
            "/s.sock\nzero\n",
            "/s.sock\n0\n",
        ] {
            assert!(spare_reply(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_flags_name_berthd_and_the_level() {
        let args = SpareArgs {
            shim_binary: "/usr/bin/berth-shim".into(),
            socket: "/run/berth/s/spare-1.sock".into(),
            publish_address: "/run/berth/berthd.sock".into(),
            supervisor_pid: 77,
            log_level: Some("debug".into()),
        };
        let line: Vec<String> = args
            .to_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            line.join(" "),
            "spare --socket /run/berth/s/spare-1.sock --publish-address /run/berth/berthd.sock \
             --supervisor-pid 77 --log-level debug"
        );
    }
}
