//! The three file descriptors a container's process gets as its stdin, stdout and stderr.
//!
//! They are handed to the runtime as its own stdio when it creates the container (or exec's a
//! process), and the runtime passes them on to the process. Every other descriptor of ours is
//! close-on-exec, so the container holds only these three.

use std::io;
use std::os::fd::OwnedFd;
use std::process;

/// Stdio for a container process; a `None` stream is connected to `/dev/null`.
#[derive(Debug, Default)]
pub struct Stdio {
    /// What the process reads as fd 0.
    pub stdin: Option<OwnedFd>,
    /// What the process writes as fd 1.
    pub stdout: Option<OwnedFd>,
    /// What the process writes as fd 2.
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    /// All three streams on `/dev/null`.
    pub fn null() -> Stdio {
        Stdio::default()
    }

    /// The three streams as `std::process::Stdio`, each a fresh duplicate so `self` keeps its
    /// descriptors (and can be reused, or dropped whenever the caller wants).
    pub(crate) fn for_child(&self) -> io::Result<[process::Stdio; 3]> {
        let stream = |fd: &Option<OwnedFd>| -> io::Result<process::Stdio> {
            Ok(match fd {
                Some(fd) => process::Stdio::from(fd.try_clone()?),
                None => process::Stdio::null(),
            })
        };
        Ok([
            stream(&self.stdin)?,
            stream(&self.stdout)?,
            stream(&self.stderr)?,
        ])
    }
}
