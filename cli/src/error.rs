//! Every way a command can fail, each printed as one clear line.

use std::process::ExitCode;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// berthd could not be reached.
    #[error("{}", one_line(&.0.to_string()))]
    Connect(#[from] berth_client::ConnectError),
    /// berthd answered a call with an error.
    #[error("{action}: {}", one_line(.status.message()))]
    Rpc {
        /// What was being done, e.g. "listing images".
        action: String,
        /// The daemon's answer (boxed: a status is large, and every result carries this).
        status: Box<tonic::Status>,
    },
    /// A client-side operation (reading an image, unpack, pull, push, archives) failed.
    #[error("{}", one_line(&.0.to_string()))]
    Client(Box<berth_client::ClientError>),
    /// The command line asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Something went wrong that the message explains (not a usage error).
    #[error("{0}")]
    Failed(String),
    /// A local file or terminal operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Several targets of one command failed (e.g. `rm a b c`); each is named.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<CliError>),
}

impl From<berth_client::ClientError> for CliError {
    fn from(error: berth_client::ClientError) -> CliError {
        CliError::Client(Box::new(error))
    }
}

/// `text` on one line: line breaks (and the indentation after them) become `; `, so a
/// daemon's multi-line message still prints as the one line every error gets.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl CliError {
    /// Wraps a failed call with what was being done.
    pub fn rpc(action: impl Into<String>) -> impl FnOnce(tonic::Status) -> CliError {
        let action = action.into();
        move |status| CliError::Rpc {
            action,
            status: Box::new(status),
        }
    }

    /// A local I/O failure with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    /// Ok if nothing failed, the one error if one did, all of them in one line otherwise.
    pub fn from_failures(mut failures: Vec<CliError>) -> Result<(), CliError> {
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(CliError::Several(failures)),
        }
    }

    /// The process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_daemon_message_prints_on_one_line() {
        let error = CliError::rpc("listing active ingests")(tonic::Status::invalid_argument(
            "bad regular expression: regex parse error:\n    (unclosed\n    ^\nerror: unclosed group",
        ));
        assert_eq!(
            error.to_string(),
            "listing active ingests: bad regular expression: regex parse error:; (unclosed; ^; error: unclosed group"
        );
    }

    #[test]
    fn several_failures_are_named_in_one_line() {
        let failures = vec![
            CliError::Failed("removing a: not found".into()),
            CliError::Failed("removing b: not found".into()),
        ];
        let error = CliError::from_failures(failures).unwrap_err();
        assert_eq!(
            error.to_string(),
            "removing a: not found; removing b: not found"
        );
        assert!(CliError::from_failures(Vec::new()).is_ok());
    }
}
