//! A process's stdio: opening what the client named, handing the process its three
//! descriptors, and running the few copies the shim itself must do.
//!
//! Output streams are handed to the process directly, with no copy through the shim: a
//! fifo is opened read-write (so opening never blocks and the client may open its end
//! late), a `file://` is opened for appending, a `binary://` logger gets pipes. The shim
//! keeps none of them once the runtime has started the process, so the client sees end of
//! file exactly when the process and its children are done.
//!
//! Two streams need the shim in the middle: stdin goes through a pipe the shim feeds from
//! the client's fifo (a process reading a fifo no client has opened yet would see end of
//! file at once, and CloseIO must be able to end it), and a terminal's pty master is
//! copied to the client's stdout and fed from its stdin.

mod binary_logger;
mod copy;
mod target;

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::server::fd::{pipe, AsyncFile};
use crate::server::{ShimError, TaskIdentity};

pub(crate) use target::StdioTarget;

/// The stdio a process was created with, as the client named it (kept for State replies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StdioPaths {
    /// The client's stdin (a fifo path) or empty.
    pub stdin: String,
    /// The client's stdout: fifo path, `file://` or `binary://` URI, or empty.
    pub stdout: String,
    /// The client's stderr, as stdout.
    pub stderr: String,
    /// The process has a terminal (stdout then carries both output streams).
    pub terminal: bool,
}

/// Everything opened for one process before the runtime starts it.
#[derive(Debug)]
pub(crate) struct OpenedStdio {
    /// What the runtime hands to the process (ignored with a terminal).
    pub process: berth_runtime::Stdio,
    /// What the shim keeps to run its copies once the process exists.
    pub shim_side: ShimSide,
}

/// The shim's ends of a process's streams.
#[derive(Debug, Default)]
pub(crate) struct ShimSide {
    /// The client's stdin fifo, opened for reading.
    stdin_source: Option<OwnedFd>,
    /// Without a terminal: the pipe whose other end is the process's stdin.
    stdin_pipe: Option<OwnedFd>,
    /// With a terminal: where the terminal's output goes.
    terminal_output: Option<Output>,
}

/// An opened output destination.
#[derive(Debug)]
enum Output {
    /// A fifo or pipe.
    Pollable(OwnedFd),
    /// A regular file.
    File(std::fs::File),
}

impl Output {
    fn into_fd(self) -> OwnedFd {
        match self {
            Output::Pollable(fd) => fd,
            Output::File(file) => file.into(),
        }
    }
}

/// Opens the client's streams for a process of `task`. Blocking (it may start a logging
/// binary and wait for it), so call it off the runtime. On error everything opened so far
/// is closed again, so a client waiting on its fifos sees them end.
pub(crate) fn open(paths: &StdioPaths, task: &TaskIdentity) -> Result<OpenedStdio, ShimError> {
    let stdin = StdioTarget::parse(&paths.stdin)?;
    let stdout = StdioTarget::parse(&paths.stdout)?;
    let stderr = StdioTarget::parse(&paths.stderr)?;

    let stdin_source = match &stdin {
        StdioTarget::Null => None,
        StdioTarget::Fifo(path) => Some(open_fifo(path, "stdin", false)?),
        _ => {
            return Err(ShimError::InvalidArgument(format!(
                "stdin {:?} must be a fifo",
                paths.stdin
            )))
        }
    };

    let mut opened = OpenedStdio {
        process: berth_runtime::Stdio::null(),
        shim_side: ShimSide {
            stdin_source,
            ..ShimSide::default()
        },
    };
    if paths.terminal {
        opened.shim_side.terminal_output = open_output(&stdout, "stdout", task)?.map(|o| o.0);
        return Ok(opened);
    }
    if opened.shim_side.stdin_source.is_some() {
        let (reader, writer) =
            pipe().map_err(ShimError::io("create stdin pipe for", &task.bundle))?;
        opened.process.stdin = Some(reader);
        opened.shim_side.stdin_pipe = Some(writer);
    }
    let (stdout_fd, logger_stderr) = match open_output(&stdout, "stdout", task)? {
        Some((output, logger_stderr)) => (Some(output.into_fd()), logger_stderr),
        None => (None, None),
    };
    opened.process.stdout = stdout_fd;
    opened.process.stderr = match logger_stderr {
        // The same logging binary takes both streams.
        Some(stderr_pipe) if paths.stderr == paths.stdout => Some(stderr_pipe),
        _ => open_output(&stderr, "stderr", task)?.map(|(output, _)| output.into_fd()),
    };
    Ok(opened)
}

/// Opens one output destination. For a logging binary, also returns the pipe for its
/// stderr stream.
fn open_output(
    target: &StdioTarget,
    stream: &'static str,
    task: &TaskIdentity,
) -> Result<Option<(Output, Option<OwnedFd>)>, ShimError> {
    Ok(match target {
        StdioTarget::Null => None,
        StdioTarget::Fifo(path) => Some((Output::Pollable(open_fifo(path, stream, true)?), None)),
        StdioTarget::File(path) => Some((Output::File(open_log_file(path)?), None)),
        StdioTarget::Binary { path, args } => {
            let pipes = binary_logger::start(path, args, task)?;
            Some((Output::Pollable(pipes.stdout), Some(pipes.stderr)))
        }
    })
}

/// Opens the client's fifo `path` without blocking: read-write for output (so it never
/// waits for the client's reader, and the data waits in the fifo for a late one), or
/// read-only and non-blocking for stdin. Anything but a fifo is refused.
fn open_fifo(path: &Path, stream: &'static str, output: bool) -> Result<OwnedFd, ShimError> {
    let mut options = std::fs::OpenOptions::new();
    if output {
        options.read(true).write(true);
    } else {
        options.read(true).custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(ShimError::io(
        match stream {
            "stdin" => "open stdin fifo",
            "stdout" => "open stdout fifo",
            _ => "open stderr fifo",
        },
        path,
    ))?;
    let kind = file
        .metadata()
        .map_err(ShimError::io("inspect", path))?
        .file_type();
    if !kind.is_fifo() {
        return Err(ShimError::InvalidArgument(format!(
            "{stream} {} is not a fifo",
            path.display()
        )));
    }
    Ok(file.into())
}

/// Opens `path` for appending (created 0600, with missing parent directories 0700).
fn open_log_file(path: &Path) -> Result<std::fs::File, ShimError> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(ShimError::io("create directory for log file", parent))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(ShimError::io("open log file", path))
}

/// The copies running for one process, and the handles CloseIO and ResizePty need.
#[derive(Debug, Default)]
pub(crate) struct ProcessIo {
    /// Ends the stdin copy (CloseIO).
    stdin_close: Option<Arc<Notify>>,
    /// The process's terminal, if it has one.
    console: Option<Arc<AsyncFile>>,
    /// The stdin copy, stopped when the process is deleted.
    stdin_copy: Option<JoinHandle<()>>,
}

impl ProcessIo {
    /// Starts the copies for a process that now exists. `console` is the pty master the
    /// runtime sent, for a process with a terminal. Must run on the shim's runtime.
    pub(crate) fn start(side: ShimSide, console: Option<OwnedFd>) -> Result<ProcessIo, ShimError> {
        let register = |fd| AsyncFile::new(fd).map_err(ShimError::io("register stream", ""));
        let mut io = ProcessIo::default();
        let console = console.map(register).transpose()?.map(Arc::new);
        if let Some(console) = &console {
            let sink = match side.terminal_output {
                Some(Output::Pollable(fd)) => copy::Sink::Pollable(register(fd)?),
                Some(Output::File(file)) => copy::Sink::File(file),
                None => copy::Sink::Discard,
            };
            tokio::spawn(copy::copy_output(console.clone(), sink));
        }
        let stdin_sink = match (&console, side.stdin_pipe) {
            (Some(console), _) => Some(console.clone()),
            (None, Some(pipe)) => Some(Arc::new(register(pipe)?)),
            (None, None) => None,
        };
        if let (Some(source), Some(sink)) = (side.stdin_source, stdin_sink) {
            let close = Arc::new(Notify::new());
            io.stdin_copy = Some(tokio::spawn(copy::copy_stdin(
                register(source)?,
                sink,
                close.clone(),
            )));
            io.stdin_close = Some(close);
        }
        io.console = console;
        Ok(io)
    }

    /// Ends the process's stdin once what the client already wrote is passed on.
    pub(crate) fn close_stdin(&self) {
        if let Some(close) = &self.stdin_close {
            close.notify_one();
        }
    }

    /// Sets the terminal's size; [`ShimError::FailedPrecondition`] without a terminal.
    pub(crate) fn resize(&self, width: u32, height: u32) -> Result<(), ShimError> {
        let Some(console) = &self.console else {
            return Err(ShimError::FailedPrecondition(
                "the process has no terminal to resize".into(),
            ));
        };
        let size = rustix::termios::Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(console.fd(), size)
            .map_err(|e| ShimError::io("resize terminal", "")(e.into()))
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        // A client that never closes its stdin must not keep the copy (and fds) alive.
        if let Some(copy) = self.stdin_copy.take() {
            copy.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn task(dir: &Path) -> TaskIdentity {
        TaskIdentity {
            namespace: "default".into(),
            id: "t1".into(),
            bundle: dir.to_path_buf(),
        }
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn output_fifos_open_without_a_reader_and_keep_the_data_for_a_late_one() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        mkfifo(&fifo);
        let paths = StdioPaths {
            stdout: fifo.display().to_string(),
            ..StdioPaths::default()
        };
        let opened = open(&paths, &task(dir.path())).unwrap();
        let stdout = opened.process.stdout.unwrap();
        assert!(opened.process.stdin.is_none() && opened.process.stderr.is_none());
        std::fs::File::from(stdout.try_clone().unwrap())
            .write_all(b"hello\n")
            .unwrap();
        // The reader comes late; closing the last writer ends its stream after the data.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        drop(stdout);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello\n");
    }

    #[test]
    fn file_uris_append_and_non_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/out.log");
        let paths = StdioPaths {
            stdout: format!("file://{}", log.display()),
            ..StdioPaths::default()
        };
        let opened = open(&paths, &task(dir.path())).unwrap();
        std::fs::File::from(opened.process.stdout.unwrap())
            .write_all(b"one\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\n");

        let not_fifo = StdioPaths {
            stderr: log.display().to_string(),
            ..StdioPaths::default()
        };
        let err = open(&not_fifo, &task(dir.path())).unwrap_err();
        assert!(err.to_string().contains("is not a fifo"), "{err}");
        let missing = StdioPaths {
            stdin: dir.path().join("absent").display().to_string(),
            ..StdioPaths::default()
        };
        assert!(open(&missing, &task(dir.path())).is_err());
    }
}
