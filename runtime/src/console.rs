//! The console socket: how a runtime hands over the pty of a container that has a terminal.
//!
//! When the spec sets `process.terminal`, the runtime creates a pty inside the container, connects
//! to the unix socket passed as `--console-socket` and sends the pty master as an `SCM_RIGHTS`
//! message. The socket is path-based (never abstract) and mode 0600.

use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// A listening console socket; the socket file is removed when this is dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds a new socket at `path` (which must not exist) with mode 0600.
    pub fn bind(path: &Path) -> Result<ConsoleSocket> {
        let listener = UnixListener::bind(path).map_err(Error::io("bind console socket", path))?;
        let socket = ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("set mode 0600 on console socket", path))?;
        Ok(socket)
    }

    /// The socket's path, to pass as `console_socket` to `create` or `exec`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and returns the pty master it sends (close-on-exec).
    /// Call it after a successful `create`/`exec`; gives up after `timeout`.
    pub fn receive_pty_master(&self, timeout: Duration) -> Result<OwnedFd> {
        wait_readable(self.listener.as_raw_fd(), timeout).map_err(Error::io(
            "wait for the runtime on console socket",
            &self.path,
        ))?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(Error::io("accept on console socket", &self.path))?;
        stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(Error::io("set timeout on console socket", &self.path))?;
        receive_fd(&stream).map_err(Error::io("receive pty master on", &self.path))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until `fd` is readable, or fails with `TimedOut`.
fn wait_readable(fd: RawFd, timeout: Duration) -> std::io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `pollfd` is a valid, initialised array of one element for the whole call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        match ready {
            0 => return Err(std::io::ErrorKind::TimedOut.into()),
            n if n > 0 => return Ok(()),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// Receives one message carrying file descriptors; keeps the first one, closes any others.
fn receive_fd(stream: &UnixStream) -> std::io::Result<OwnedFd> {
    // The runtime sends the pty's name as data; it is not needed but must be read.
    let mut data = [0u8; 4096];
    // Room for a handful of descriptors, aligned for `cmsghdr`.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: `msghdr` is plain old data; all-zero is a valid empty header.
    let mut message: libc::msghdr = unsafe { mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = mem::size_of_val(&control) as _;

    let received = loop {
        // SAFETY: `message` points at `iov`, `data` and `control`, which outlive the call and
        // whose lengths are the ones given.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    };

    let mut descriptors: Vec<OwnedFd> = Vec::new();
    // SAFETY: `message` was filled in by a successful recvmsg; the CMSG_* macros only walk the
    // control buffer within `msg_controllen`.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&message) };
    while !header.is_null() {
        // SAFETY: `header` is non-null and points inside `control`, as CMSG_FIRSTHDR/NXTHDR
        // guarantee.
        let (level, kind, len) = unsafe {
            (
                (*header).cmsg_level,
                (*header).cmsg_type,
                (*header).cmsg_len,
            )
        };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN of zero bytes is a pure size computation.
            let payload = len - unsafe { libc::CMSG_LEN(0) } as usize;
            let count = payload / mem::size_of::<libc::c_int>();
            // SAFETY: `header` is a valid SCM_RIGHTS header, so its data holds `count` ints.
            let first = unsafe { libc::CMSG_DATA(header) }.cast::<libc::c_int>();
            for index in 0..count {
                // SAFETY: `index < count`, within this header's data; the data may be unaligned.
                let fd = unsafe { first.add(index).read_unaligned() };
                // SAFETY: the kernel just installed `fd` in this process for us; nothing else
                // owns it.
                descriptors.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `header` came from CMSG_FIRSTHDR/NXTHDR on this same `message`.
        header = unsafe { libc::CMSG_NXTHDR(&message, header) };
    }
    if message.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(std::io::Error::other(
            "console socket message truncated (too many descriptors)",
        ));
    }
    match descriptors.into_iter().next() {
        Some(fd) => Ok(fd),
        None if received == 0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        None => Err(std::io::Error::other(
            "the runtime's console message carried no file descriptor",
        )),
    }
}
