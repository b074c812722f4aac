//! `berthctl run`: make a container from an image and run its task, as `ctr run` does.
//!
//! Attached (the default), berthctl copies the task's output here and this stdin to it,
//! passes on signals (or, with `-t`, runs this terminal raw and keeps the sizes equal),
//! and exits with the task's exit status. `--rm` removes the container and its snapshot
//! afterwards. `-d` returns once the task runs.
//!
//! Either the task runs, or nothing is left: a container whose task cannot be created or
//! started (a missing entrypoint, a missing runtime binary) is removed again with its
//! snapshot, and an interruption while the container is being made undoes it.

use std::process::ExitCode;

use crate::commands::containers;
use crate::commands::containers::create::{create_container, Made, NewContainer};
use crate::commands::tasks::exit_code;
use crate::commands::tasks::launch::{launch_task, Launch, Launched, StdioFlags};
use crate::commands::tasks::signal::{catch_forwarded_signals, signal_name};
use crate::context::Context;
use crate::error::CliError;
use crate::spec::ContainerFlags;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Remove the container and its snapshot once the task has exited.
    #[arg(long, conflicts_with = "detach")]
    pub rm: bool,
    /// Return once the task runs instead of staying attached to it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where the task's stdio goes.
    #[command(flatten)]
    pub stdio: StdioFlags,
    /// How the container is made.
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// The image (by its full name, as `images ls` shows it).
    pub image: String,
    /// The new container's id.
    pub id: String,
    /// The command line, replacing the image's Cmd.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The exit code for a run cut short by a signal: 128 + its number, as a shell reports.
fn interrupted_code(signal: u32) -> ExitCode {
    exit_code(128 + signal)
}

/// Runs `berthctl run`.
pub async fn run(context: &Context, args: RunArgs) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    // From here on, Ctrl-C and friends no longer end berthctl outright: while the
    // container is being made they undo it, once the task runs they are passed on.
    let mut signals = catch_forwarded_signals().map_err(CliError::io("catching signals"))?;
    let new = NewContainer {
        namespace: &context.namespace,
        image: &args.image,
        id: &args.id,
        args: &args.args,
        flags: &args.flags,
    };
    let mut made = Made::default();
    let created = tokio::select! {
        created = create_container(&api, &new, &mut made) => created.map(Ok),
        Some(signal) = signals.recv() => Ok(Err(signal)),
    };
    drop(signals);
    let container = match created {
        Ok(Ok(container)) => container,
        Ok(Err(signal)) => {
            eprintln!(
                "berthctl: {} while making container {}: undoing it",
                signal_name(signal),
                args.id
            );
            made.undo(&api).await;
            return Ok(interrupted_code(signal));
        }
        Err(e) => {
            made.undo(&api).await;
            return Err(e);
        }
    };

    let launch = Launch {
        namespace: context.namespace.clone(),
        container_id: container.id.clone(),
        snapshot: containers::snapshot_of(&container),
        terminal: args.flags.tty,
        detach: args.detach,
        stdio: args.stdio.clone(),
    };
    let launched = match launch_task(&api, &launch).await {
        Ok(launched) => launched,
        Err(e) => {
            made.undo(&api).await;
            return Err(e);
        }
    };
    match launched {
        Launched::Detached { .. } => Ok(ExitCode::SUCCESS),
        Launched::Exited { status } => {
            if args.rm {
                containers::remove(&api, &container.id, false).await?;
            }
            Ok(exit_code(status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::containers::ContainersCommand;
    use crate::commands::tasks::cli_shape;

    #[derive(Debug, clap::Subcommand)]
    enum Group {
        Run(Box<RunArgs>),
        #[command(subcommand)]
        Containers(ContainersCommand),
    }

    #[test]
    fn flags_do_not_clash_with_the_global_ones() {
        cli_shape::assert_valid::<Group>();
    }

    #[test]
    fn a_ctr_style_run_line_parses() {
        let Group::Run(run) = cli_shape::parse::<Group>(&[
            "-n",
            "ns",
            "run",
            "--rm",
            "-t",
            "--env",
            "A=1",
            "--mount",
            "type=bind,src=/tmp,dst=/t,options=rbind:ro",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--label",
            "k=v",
            "--runc-binary",
            "/usr/bin/crun",
            "localhost/busybox:latest",
            "c1",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap() else {
            panic!("not a run");
        };
        assert!(run.rm && run.flags.tty && !run.detach);
        assert_eq!(run.flags.memory, Some(64 << 20));
        assert_eq!(run.image, "localhost/busybox:latest");
        assert_eq!(run.id, "c1");
        assert_eq!(run.args, ["sh", "-c", "exit 3"]);
        assert_eq!(run.flags.runtime, "io.containerd.runc.v2");
        assert_eq!(run.flags.snapshotter, "overlayfs");
    }

    #[test]
    fn rm_and_detach_do_not_go_together() {
        let err = cli_shape::parse::<Group>(&["run", "--rm", "-d", "img", "c1"]).unwrap_err();
        assert!(err.to_string().contains("--rm"), "{err}");
    }

    #[test]
    fn interrupted_runs_exit_like_a_shell_reports_signals() {
        assert_eq!(interrupted_code(2), ExitCode::from(130));
        assert_eq!(interrupted_code(15), ExitCode::from(143));
    }
}
