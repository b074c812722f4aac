//! berthctl's own terminal: raw mode while a container's terminal is attached, and the
//! window size to pass on to it.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::termios::{OptionalActions, Termios};

use super::StdioError;

/// Whether berthctl's stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The window size of berthctl's terminal as (columns, rows): stdin's, else stdout's;
/// `None` when neither is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let size = rustix::termios::tcgetwinsize(stdin.as_fd())
        .or_else(|_| rustix::termios::tcgetwinsize(stdout.as_fd()))
        .ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// A terminal put in raw mode (no echo, no line editing, no signals from keys: every
/// byte goes to the container's terminal, which does all of that itself). The previous
/// settings come back when this is dropped, on every way out including a panic.
#[derive(Debug)]
#[must_use = "the terminal goes back to normal as soon as this is dropped"]
pub struct RawMode {
    fd: std::os::fd::OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts berthctl's stdin terminal in raw mode; `Ok(None)` if stdin is not a terminal.
    pub fn enable_on_stdin() -> Result<Option<RawMode>, StdioError> {
        if !stdin_is_terminal() {
            return Ok(None);
        }
        let stdin = std::io::stdin();
        Self::enable(stdin.as_fd()).map(Some)
    }

    /// Puts the terminal `fd` in raw mode.
    pub fn enable(fd: BorrowedFd<'_>) -> Result<RawMode, StdioError> {
        let failed = |e: rustix::io::Errno| StdioError::Terminal(e.into());
        let fd = fd.try_clone_to_owned().map_err(StdioError::Terminal)?;
        let saved = rustix::termios::tcgetattr(&fd).map_err(failed)?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Keep output post-processing so that "\n" from berthctl's own messages still
        // starts a new line; the container's terminal sends "\r\n" itself.
        raw.output_modes = saved.output_modes;
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw).map_err(failed)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::termios::LocalModes;

    /// Opens a new pseudo-terminal pair and returns its slave side.
    fn pty_slave() -> std::fs::File {
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        // Keep the master open as long as the slave lives.
        std::mem::forget(master);
        slave
    }

    #[test]
    fn raw_mode_is_undone_on_drop() {
        let slave = pty_slave();
        let before = rustix::termios::tcgetattr(&slave).unwrap();
        assert!(before
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON));
        {
            let _raw = RawMode::enable(slave.as_fd()).unwrap();
            let during = rustix::termios::tcgetattr(&slave).unwrap();
            assert!(!during.local_modes.contains(LocalModes::ECHO));
            assert!(!during.local_modes.contains(LocalModes::ICANON));
            assert!(!during.local_modes.contains(LocalModes::ISIG));
        }
        let after = rustix::termios::tcgetattr(&slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes);
        assert_eq!(after.input_modes, before.input_modes);
    }

    #[test]
    fn raw_mode_is_undone_when_a_panic_unwinds() {
        let slave = pty_slave();
        let before = rustix::termios::tcgetattr(&slave).unwrap();
        let fd = slave.as_fd().try_clone_to_owned().unwrap();
        let result = std::panic::catch_unwind(move || {
            let _raw = RawMode::enable(fd.as_fd()).unwrap();
            panic!("a failure while attached");
        });
        assert!(result.is_err());
        let after = rustix::termios::tcgetattr(&slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes);
    }
}
