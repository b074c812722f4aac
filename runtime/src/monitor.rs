//! How runtime processes are started and waited for.
//!
//! A process that is a child subreaper and reaps every child itself (as a shim does, to catch
//! the container's exit) would steal the exit status of `runc` from `Child::wait`. Such a
//! process supplies its own [`ProcessMonitor`]: it registers the pid when it starts the
//! command and hands over the status its reaper collected. Everyone else uses
//! [`DirectMonitor`].

use std::io;
use std::process::{Child, Command, ExitStatus};

/// Starts runtime commands and waits for them to exit.
pub trait ProcessMonitor: Send + Sync + std::fmt::Debug {
    /// Spawns `command`. An implementation that reaps children elsewhere must register the pid
    /// here, before the child can exit unnoticed.
    fn start(&self, command: &mut Command) -> io::Result<Child>;

    /// Waits for a child returned by [`ProcessMonitor::start`] and returns its exit status.
    fn wait(&self, child: Child) -> io::Result<ExitStatus>;
}

/// The plain monitor: `Command::spawn` and `Child::wait`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectMonitor;

impl ProcessMonitor for DirectMonitor {
    fn start(&self, command: &mut Command) -> io::Result<Child> {
        command.spawn()
    }

    fn wait(&self, mut child: Child) -> io::Result<ExitStatus> {
        child.wait()
    }
}
