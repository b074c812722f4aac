//! Small descriptor helpers: close-on-exec pipes, non-blocking mode, and [`AsyncFile`], a
//! descriptor (pipe, fifo or pty master) read and written from the tokio runtime.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::pipe::PipeFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A pipe as (read end, write end), both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

/// Puts `fd`'s open file description in non-blocking mode.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// A pollable descriptor (pipe, fifo, pty master) in non-blocking mode, registered with
/// the tokio reactor so reads and writes wait without a thread.
#[derive(Debug)]
pub(crate) struct AsyncFile {
    inner: AsyncFd<OwnedFd>,
}

impl AsyncFile {
    /// Registers `fd` (made non-blocking) for reading and writing. Must be called from
    /// within the runtime; regular files cannot be registered (the kernel refuses).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<AsyncFile> {
        set_nonblocking(&fd)?;
        // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until it is dropped,
        // which happens only with the `AsyncFd`.
        let inner =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(AsyncFile { inner })
    }

    /// The descriptor, e.g. for an ioctl.
    pub(crate) fn fd(&self) -> &OwnedFd {
        self.inner.get_ref()
    }

    /// Reads into `buf`, waiting until something is there; 0 means end of file.
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *buf)?)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads what is there now without waiting: `WouldBlock` when nothing is.
    pub(crate) fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(self.inner.get_ref(), buf)?)
    }

    /// Writes all of `buf`, waiting while the other side is full.
    pub(crate) async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.inner.writable().await?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), buf)?)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(written)) => buf = &buf[written..],
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_pipe_carries_bytes_and_ends_with_eof() {
        let (reader, writer) = pipe().unwrap();
        let flags = rustix::io::fcntl_getfd(&reader).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let reader = AsyncFile::new(reader).unwrap();
        let writer = AsyncFile::new(writer).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            reader.read_now(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        writer.write_all(b"hello").await.unwrap();
        drop(writer);
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
    }
}
