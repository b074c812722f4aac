//! The `berth-shim` command line: `start`, `spare`, `delete`, and the internal `serve` that
//! `start` runs as the daemon. Parsing and the reverse (the flags `start` passes to `serve`) live
//! together here so they cannot drift apart.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::server::{cleanup, daemon, exit_file, launch};
use crate::server::{DaemonConfig, RuntimeSettings, ShimError, SpareConfig, TaskIdentity};

/// berth-shim: the per-container shim of Berth.
#[derive(Debug, Parser)]
#[command(name = "berth-shim", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon shim of a task and print its socket path.
    Start(StartArgs),
    /// Start a spare daemon shim, to be given a task by berthd later; print its socket and
    /// pid.
    Spare(SpareArgs),
    /// Clean up a task whose shim is gone and print how its init ended (JSON).
    Delete(DeleteArgs),
    /// Run as the daemon shim (started by `start`; not for direct use).
    #[command(hide = true)]
    Serve {
        /// The daemon's flags, as `start` got them.
        #[command(flatten)]
        args: StartArgs,
        /// Descriptor to report readiness on.
        #[arg(long)]
        ready_fd: Option<i32>,
    },
}

/// The task a command is about, and its runtime.
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Namespace of the task.
    #[arg(long)]
    pub namespace: String,
    /// Container id of the task.
    #[arg(long)]
    pub id: String,
    /// Bundle directory of the task.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The OCI runtime's state root (`<berthd state>/runc/<ns>`).
    #[arg(long)]
    pub runtime_root: PathBuf,
    /// The OCI runtime binary, unless the task's options name one (default: runc).
    #[arg(long)]
    pub runtime_binary: Option<PathBuf>,
}

/// Flags of `start` (and `serve`).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The task.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Unix socket to serve the task API on.
    #[arg(long)]
    pub socket: PathBuf,
    /// berthd's unix socket, where task events are published.
    #[arg(long)]
    pub publish_address: PathBuf,
    /// Log level for bundle/shim.log: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

/// Flags of `spare`.
#[derive(Debug, Clone, Args)]
pub struct SpareArgs {
    /// Unix socket to serve on until a task is assigned.
    #[arg(long)]
    pub socket: PathBuf,
    /// berthd's unix socket, where task events are published.
    #[arg(long)]
    pub publish_address: PathBuf,
    /// berthd's pid: the spare exits if berthd does before assigning it a task.
    #[arg(long)]
    pub supervisor_pid: i32,
    /// Log level for the assigned task's bundle/shim.log.
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

impl SpareArgs {
    /// The spare configuration these flags describe.
    pub fn config(&self) -> SpareConfig {
        SpareConfig {
            socket: self.socket.clone(),
            publish_address: self.publish_address.clone(),
            supervisor_pid: self.supervisor_pid,
            log_level: self.log_level,
        }
    }
}

/// Flags of `delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The task.
    #[command(flatten)]
    pub task: TaskArgs,
}

impl TaskArgs {
    fn identity(&self) -> TaskIdentity {
        TaskIdentity {
            namespace: self.namespace.clone(),
            id: self.id.clone(),
            bundle: self.bundle.clone(),
        }
    }

    fn settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            root: self.runtime_root.clone(),
            binary: self.runtime_binary.clone(),
        }
    }
}

impl StartArgs {
    /// The daemon configuration these flags describe.
    pub fn config(&self) -> DaemonConfig {
        DaemonConfig {
            task: self.task.identity(),
            runtime: self.task.settings(),
            socket: self.socket.clone(),
            publish_address: self.publish_address.clone(),
            log_level: self.log_level,
        }
    }
}

/// The flags that make `serve` (or `start`) run with `config`.
pub fn daemon_flags(config: &DaemonConfig) -> Vec<OsString> {
    let mut flags: Vec<OsString> = vec![
        "--namespace".into(),
        config.task.namespace.clone().into(),
        "--id".into(),
        config.task.id.clone().into(),
        "--bundle".into(),
        config.task.bundle.clone().into(),
        "--runtime-root".into(),
        config.runtime.root.clone().into(),
        "--socket".into(),
        config.socket.clone().into(),
        "--publish-address".into(),
        config.publish_address.clone().into(),
        "--log-level".into(),
        config.log_level.to_string().into(),
    ];
    if let Some(binary) = &config.runtime.binary {
        flags.extend(["--runtime-binary".into(), binary.clone().into()]);
    }
    flags
}

/// Parses the command line and runs the command; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => launch::start(&args.config()).map(|socket| {
            println!("{}", socket.display());
        }),
        Command::Spare(args) => launch::start_spare(&args.config()).map(|(socket, pid)| {
            println!("{}", socket.display());
            println!("{pid}");
        }),
        Command::Delete(args) => {
            cleanup::delete(&args.task.identity(), &args.task.settings()).map(|exit| {
                println!("{}", exit_file::to_json(&exit));
            })
        }
        Command::Serve { args, ready_fd } => match ready_pipe(ready_fd) {
            Ok(ready) => daemon::run(daemon::DaemonMode::Task(args.config()), ready),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => {
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth-shim: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Takes ownership of the inherited readiness descriptor, making it close-on-exec.
fn ready_pipe(fd: Option<i32>) -> Result<Option<OwnedFd>, ShimError> {
    let Some(fd) = fd else {
        return Ok(None);
    };
    // SAFETY: F_SETFD on an integer; fails with EBADF if `fd` is not open, checked below.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(ShimError::InvalidArgument(format!(
            "--ready-fd {fd} is not an inherited descriptor"
        )));
    }
    // SAFETY: `fd` is open (checked above), was handed to this process for this purpose
    // only, and nothing else takes ownership of it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_start_passes_parse_back_to_the_same_config() {
        let config = DaemonConfig {
            task: TaskIdentity {
                namespace: "default".into(),
                id: "t1".into(),
                bundle: "/run/berth/tasks/default/t1".into(),
            },
            runtime: RuntimeSettings {
                root: "/run/berth/runc/default".into(),
                binary: Some("/usr/bin/crun".into()),
            },
            socket: "/run/berth/s/abc.sock".into(),
            publish_address: "/run/berth/berthd.sock".into(),
            log_level: tracing::Level::DEBUG,
        };
        let mut argv: Vec<OsString> = vec!["berth-shim".into(), "serve".into()];
        argv.extend(daemon_flags(&config));
        argv.extend(["--ready-fd".into(), "3".into()]);
        let Command::Serve { args, ready_fd } = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(args.config(), config);
        assert_eq!(ready_fd, Some(3));
    }

    #[test]
    fn delete_takes_no_socket() {
        let cli = Cli::try_parse_from([
            "berth-shim",
            "delete",
            "--namespace",
            "default",
            "--id",
            "t1",
            "--bundle",
            "/b",
            "--runtime-root",
            "/r",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Delete(_)));
    }
}
