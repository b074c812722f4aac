//! The copies the shim runs between the client's streams and a process: the client's
//! stdin fifo into the process's stdin pipe (or its terminal), and a terminal's output to
//! the client's stdout. Each is one small task on the shim's runtime with a 4 KiB buffer.

use std::io::{self, Write};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::server::fd::AsyncFile;

/// Size of each copy's buffer.
const BUFFER_BYTES: usize = 4096;

/// Where copied output goes.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A fifo or pipe, written without blocking the runtime.
    Pollable(AsyncFile),
    /// A regular file (which cannot be polled): small appends, written directly.
    File(std::fs::File),
    /// Nowhere: a terminal nobody reads must still be drained, or its process blocks.
    Discard,
}

impl Sink {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Pollable(file) => file.write_all(bytes).await,
            Sink::File(file) => file.write_all(bytes),
            Sink::Discard => Ok(()),
        }
    }
}

/// Copies the client's stdin into the process until the client closes it, or until
/// `close` is notified (CloseIO), after which what is already in the fifo is still passed
/// on. Dropping `sink` at the end gives the process end of file (for a pipe).
pub(crate) async fn copy_stdin(source: AsyncFile, sink: Arc<AsyncFile>, close: Arc<Notify>) {
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            read = source.read(&mut buf) => read,
            () = close.notified() => {
                drain_now(&source, &sink, &mut buf).await;
                return;
            }
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                if let Err(error) = sink.write_all(&buf[..n]).await {
                    tracing::debug!(%error, "process stdin closed");
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading the client's stdin failed");
                return;
            }
        }
    }
}

/// Passes on what `source` holds right now, without waiting for more.
async fn drain_now(source: &AsyncFile, sink: &AsyncFile, buf: &mut [u8]) {
    while let Ok(n) = source.read_now(buf) {
        if n == 0 || sink.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Copies a terminal's output to the client until the terminal has no process left (the
/// pty master then reads EIO), then closes `sink` so the client sees end of file.
pub(crate) async fn copy_output(source: Arc<AsyncFile>, mut sink: Sink) {
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        match source.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if let Err(error) = sink.write_all(&buf[..n]).await {
                    tracing::warn!(%error, "writing terminal output to the client failed");
                    return;
                }
            }
            // EIO: every process holding the terminal is gone.
            Err(error) if error.raw_os_error() == Some(libc::EIO) => return,
            Err(error) => {
                tracing::warn!(%error, "reading the terminal failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fd::pipe;

    #[tokio::test(flavor = "current_thread")]
    async fn stdin_is_copied_and_close_still_passes_what_was_written() {
        let (client_reader, client_writer) = pipe().unwrap();
        let (process_reader, process_writer) = pipe().unwrap();
        let close = Arc::new(Notify::new());
        let copy = tokio::spawn(copy_stdin(
            AsyncFile::new(client_reader).unwrap(),
            Arc::new(AsyncFile::new(process_writer).unwrap()),
            close.clone(),
        ));
        let client = AsyncFile::new(client_writer).unwrap();
        client.write_all(b"first ").await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(b"second").await.unwrap();
        // The client keeps its end open; CloseIO must still end the process's stdin.
        close.notify_one();
        copy.await.unwrap();
        let process = AsyncFile::new(process_reader).unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = process.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(received, b"first second");
        drop(client);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn output_is_copied_until_the_source_ends() {
        let (source_reader, source_writer) = pipe().unwrap();
        let (sink_reader, sink_writer) = pipe().unwrap();
        let copy = tokio::spawn(copy_output(
            Arc::new(AsyncFile::new(source_reader).unwrap()),
            Sink::Pollable(AsyncFile::new(sink_writer).unwrap()),
        ));
        AsyncFile::new(source_writer)
            .unwrap()
            .write_all(b"tty says hi")
            .await
            .unwrap();
        copy.await.unwrap();
        let sink = AsyncFile::new(sink_reader).unwrap();
        let mut buf = [0u8; 64];
        let n = sink.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"tty says hi");
        assert_eq!(sink.read(&mut buf).await.unwrap(), 0);
    }
}
