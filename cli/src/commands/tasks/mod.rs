//! `berthctl tasks …`: the running side of containers, named as in ctr.
//!
//! - [`start`] holds `start` and `attach`
//! - [`list`] holds `ls` and `ps`
//! - [`exec`] holds `exec`
//! - [`control`] holds `kill`, `pause`, `resume` and `wait`
//! - [`metrics`] holds `metrics`
//! - [`remove`] holds `rm`
//! - [`launch`], [`attached`] and [`signal`] hold what `run` shares with these commands

pub mod attached;
pub mod control;
pub mod exec;
pub mod launch;
pub mod list;
pub mod metrics;
pub mod remove;
pub mod signal;
pub mod start;

use std::process::ExitCode;

use crate::context::Context;
use crate::error::CliError;

/// The `tasks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// Start a container's task; stay attached to it (exiting with its status) unless -d.
    Start(start::StartArgs),
    /// Attach to a running task's stdio until it exits, exiting with its status.
    Attach(start::AttachArgs),
    /// List tasks with their pid and status.
    #[command(alias = "list")]
    Ls(list::LsArgs),
    /// List the processes of a task.
    Ps(list::PsArgs),
    /// Run another process in a running task, exiting with its status.
    Exec(exec::ExecArgs),
    /// Send a signal to a task (SIGTERM unless -s says otherwise).
    Kill(control::KillArgs),
    /// Pause (freeze) a task.
    Pause(control::IdArgs),
    /// Resume a paused task.
    Resume(control::IdArgs),
    /// Print a task's cgroup metrics (memory, CPU, processes, …).
    Metrics(metrics::MetricsArgs),
    /// Delete stopped tasks (with -f, kill them first).
    #[command(aliases = ["delete", "del", "remove"])]
    Rm(remove::RmArgs),
    /// Wait for a task (or exec) to exit, exiting with its status.
    Wait(control::WaitArgs),
}

/// Runs one `tasks` subcommand; commands that follow a process return its exit status.
pub async fn run(context: &Context, command: TasksCommand) -> Result<ExitCode, CliError> {
    match command {
        TasksCommand::Start(args) => start::start(context, args).await,
        TasksCommand::Attach(args) => start::attach(context, args).await,
        TasksCommand::Ls(args) => list::ls(context, args).await.map(|()| ExitCode::SUCCESS),
        TasksCommand::Ps(args) => list::ps(context, args).await.map(|()| ExitCode::SUCCESS),
        TasksCommand::Exec(args) => exec::exec(context, args).await,
        TasksCommand::Kill(args) => control::kill(context, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        TasksCommand::Pause(args) => control::pause(context, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        TasksCommand::Resume(args) => control::resume(context, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        TasksCommand::Metrics(args) => metrics::metrics(context, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        TasksCommand::Rm(args) => remove::rm(context, args).await.map(|()| ExitCode::SUCCESS),
        TasksCommand::Wait(args) => control::wait(context, args).await,
    }
}

/// berthctl's exit code for a process's exit status: the status itself (128 + signal
/// for a process a signal ended), 255 for anything that does not fit a byte.
pub fn exit_code(status: u32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX))
}

/// A task's status as ctr prints it (`RUNNING`, `STOPPED`, …).
pub fn status_text(status: i32) -> &'static str {
    berth_proto::containerd::v1::types::Status::try_from(status)
        .unwrap_or(berth_proto::containerd::v1::types::Status::Unknown)
        .as_str_name()
}

/// A command line shaped like berthctl's (the global flags, then one command group), for
/// tests that check the flags of a group parse and do not clash with the global ones.
#[cfg(test)]
pub(crate) mod cli_shape {
    use clap::{CommandFactory, Parser, Subcommand};

    /// The global flags berthctl has, with their short names.
    #[derive(Debug, Parser)]
    #[command(name = "berthctl")]
    pub struct Shape<C: Subcommand> {
        /// As berthctl's `--address/-a`.
        #[arg(
            long,
            short = 'a',
            global = true,
            default_value = "/run/berth/berthd.sock"
        )]
        pub address: String,
        /// As berthctl's `--namespace/-n`.
        #[arg(long, short = 'n', global = true, default_value = "default")]
        pub namespace: String,
        /// The command group under test.
        #[command(subcommand)]
        pub command: C,
    }

    /// Checks clap's rules (unique short names, …) for the whole shape.
    pub fn assert_valid<C: Subcommand + std::fmt::Debug>() {
        Shape::<C>::command().debug_assert();
    }

    /// Parses `args` (after the program name) into the shape.
    pub fn parse<C: Subcommand + std::fmt::Debug>(args: &[&str]) -> Result<C, clap::Error> {
        Shape::<C>::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied()))
            .map(|shape| shape.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Subcommand)]
    enum Group {
        #[command(subcommand)]
        Tasks(TasksCommand),
    }

    #[test]
    fn flags_do_not_clash_with_the_global_ones() {
        cli_shape::assert_valid::<Group>();
    }

    #[test]
    fn ctr_style_command_lines_parse() {
        let Group::Tasks(TasksCommand::Kill(kill)) = cli_shape::parse::<Group>(&[
            "-n", "ns", "tasks", "kill", "-s", "SIGKILL", "--all", "t1",
        ])
        .unwrap() else {
            panic!("not a kill");
        };
        assert_eq!((kill.signal, kill.all, kill.id.as_str()), (9, true, "t1"));

        let Group::Tasks(TasksCommand::Exec(exec)) = cli_shape::parse::<Group>(&[
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            "-t",
            "t1",
            "sh",
            "-c",
            "exit 7",
        ])
        .unwrap() else {
            panic!("not an exec");
        };
        assert_eq!(exec.args, ["sh", "-c", "exit 7"]);
        assert!(exec.tty);

        let Group::Tasks(TasksCommand::Rm(rm)) =
            cli_shape::parse::<Group>(&["tasks", "delete", "-f", "a", "b"]).unwrap()
        else {
            panic!("not an rm");
        };
        assert!(rm.force);
        assert_eq!(rm.ids, ["a", "b"]);
        assert!(cli_shape::parse::<Group>(&["tasks", "kill", "-s", "SIGNOPE", "t1"]).is_err());
    }

    #[test]
    fn exit_statuses_become_exit_codes() {
        assert_eq!(exit_code(0), ExitCode::SUCCESS);
        assert_eq!(exit_code(3), ExitCode::from(3));
        assert_eq!(exit_code(137), ExitCode::from(137));
        assert_eq!(exit_code(4096), ExitCode::from(255));
    }

    #[test]
    fn statuses_read_like_ctr() {
        assert_eq!(status_text(2), "RUNNING");
        assert_eq!(status_text(3), "STOPPED");
        assert_eq!(status_text(4), "PAUSED");
        assert_eq!(status_text(99), "UNKNOWN");
    }
}
