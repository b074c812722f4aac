//! `berthctl completion <shell>`: a shell completion script on stdout.

use std::io::Write;

use clap_complete::Shell;

use crate::error::CliError;

/// Options of `completion`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the completion script of `command` (berthctl's whole command tree) for the
/// chosen shell, e.g. for `source <(berthctl completion bash)`.
pub fn run(args: CompletionArgs, mut command: clap::Command) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "berthctl", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(CliError::io("writing the completion script"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_whole_command_tree_is_consistent() {
        // Clap checks flag clashes (a subcommand's `-a` against the global `-a`) only
        // when the tree is built, which completion does for every command at once.
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn bash_completion_names_the_command_groups() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut crate::Cli::command(),
            "berthctl",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for group in [
            "images",
            "snapshots",
            "content",
            "leases",
            "namespaces",
            "events",
        ] {
            assert!(script.contains(group), "{group} is not completed");
        }
    }
}
