//! Copying between berthctl's own stdio and a process's fifos.
//!
//! Output fifos are read without blocking. While a process is being created nobody else
//! has the write end open yet, so berthctl holds a write end itself (a "keeper") until the
//! shim and the process have theirs: the reader then sees end of file exactly when the
//! process (and whatever inherited its output) is gone, never before it began.
//!
//! berthctl's stdin is read by a plain thread, not by the async runtime: a read from a
//! terminal can block forever, and such a read must not keep berthctl from exiting.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::fifo::ProcessFifos;
use super::StdioError;

/// How many chunks of berthctl's stdin may wait to be written into the fifo.
const STDIN_QUEUE: usize = 16;

/// Size of one read from berthctl's stdin.
const STDIN_CHUNK: usize = 32 * 1024;

/// Whether the process is about to be created or already runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// The process does not exist yet (Tasks.Create / Tasks.Exec is next): output fifos
    /// get keepers, stdin is opened so that opening never fails.
    NewProcess,
    /// The process exists (tasks attach): its fifos are opened as they are.
    Existing,
}

/// The streams of one process being copied to and from berthctl's own stdio.
#[derive(Debug)]
pub struct ProcessIo {
    outputs: Vec<JoinHandle<()>>,
    stdin_copy: Option<JoinHandle<()>>,
    keepers: Vec<File>,
    stdin_closed: Option<oneshot::Receiver<()>>,
}

impl ProcessIo {
    /// Opens the fifos of a process and starts copying: its stdout to berthctl's stdout,
    /// its stderr (if any) to berthctl's stderr, and, if `with_stdin`, berthctl's stdin
    /// into it. Must run inside the async runtime.
    pub fn open(
        fifos: &ProcessFifos,
        attach: Attach,
        with_stdin: bool,
    ) -> Result<ProcessIo, StdioError> {
        let mut io = ProcessIo {
            outputs: Vec::new(),
            stdin_copy: None,
            keepers: Vec::new(),
            stdin_closed: None,
        };
        let stdout = open_output(&fifos.stdout, attach, &mut io.keepers)?;
        io.outputs
            .push(tokio::spawn(copy_output(stdout, tokio::io::stdout())));
        if let Some(path) = &fifos.stderr {
            let stderr = open_output(path, attach, &mut io.keepers)?;
            io.outputs
                .push(tokio::spawn(copy_output(stderr, tokio::io::stderr())));
        }
        if with_stdin {
            if let Some(sink) = open_stdin(&fifos.stdin, attach)? {
                let (closed_tx, closed_rx) = oneshot::channel();
                io.stdin_copy = Some(tokio::spawn(copy_stdin(read_own_stdin(), sink, closed_tx)));
                io.stdin_closed = Some(closed_rx);
            }
        }
        Ok(io)
    }

    /// Resolves once berthctl's stdin reached its end and the fifo was closed, so the
    /// caller can tell the daemon (Tasks.CloseIO). `None` if stdin is not copied or this
    /// was already taken.
    pub fn take_stdin_closed(&mut self) -> Option<oneshot::Receiver<()>> {
        self.stdin_closed.take()
    }

    /// Lets go of the keepers once the process holds its own ends (after Start, whether it
    /// succeeded or not): from now on the output copies end when the process's do.
    pub fn process_started(&mut self) {
        self.keepers.clear();
    }

    /// Waits up to `grace` for the output copies to reach end of file, then stops
    /// everything. Returns whether all output arrived.
    pub async fn finish(mut self, grace: Duration) -> bool {
        self.keepers.clear();
        let outputs = std::mem::take(&mut self.outputs);
        let aborts: Vec<_> = outputs.iter().map(JoinHandle::abort_handle).collect();
        let all = futures::future::join_all(outputs);
        let complete = tokio::time::timeout(grace, all).await.is_ok();
        for abort in aborts {
            abort.abort();
        }
        complete
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        for copy in self.outputs.iter().chain(self.stdin_copy.iter()) {
            copy.abort();
        }
    }
}

/// Opens an output fifo for reading; for a new process also opens a keeper write end.
fn open_output(
    path: &Path,
    attach: Attach,
    keepers: &mut Vec<File>,
) -> Result<pipe::Receiver, StdioError> {
    let receiver = pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(StdioError::io("opening the output fifo", path))?;
    if attach == Attach::NewProcess {
        // Succeeds without blocking: the reader above exists.
        let keeper = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(StdioError::io("opening the output fifo", path))?;
        keepers.push(keeper);
    }
    Ok(receiver)
}

/// Opens the stdin fifo for writing. A new process's is opened read-write, which never
/// blocks nor fails for want of a reader. An existing process's is opened write-only; if
/// the shim no longer reads it (the process's stdin was closed) there is no stdin to copy.
fn open_stdin(path: &Path, attach: Attach) -> Result<Option<pipe::Sender>, StdioError> {
    let mut options = pipe::OpenOptions::new();
    if attach == Attach::NewProcess {
        options.read_write(true);
    }
    match options.open_sender(path) {
        Ok(sender) => Ok(Some(sender)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(StdioError::io("opening the stdin fifo", path)(e)),
    }
}

/// Copies one output stream until its end, flushing as it goes.
async fn copy_output(mut source: pipe::Receiver, mut sink: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sink.write_all(&buf[..n]).await.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.flush().await;
}

/// Writes what arrives from berthctl's stdin into the fifo; at its end closes the fifo
/// and reports it on `closed`.
async fn copy_stdin(
    mut chunks: mpsc::Receiver<Vec<u8>>,
    mut sink: pipe::Sender,
    closed: oneshot::Sender<()>,
) {
    while let Some(chunk) = chunks.recv().await {
        if sink.write_all(&chunk).await.is_err() {
            break;
        }
    }
    drop(sink);
    let _ = closed.send(());
}

/// Starts the thread that reads berthctl's stdin; the channel closes at its end.
fn read_own_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(STDIN_QUEUE);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::fifo::FifoDir;
    use std::io::Write;

    /// A writer into an in-memory buffer the test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl AsyncWrite for Captured {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn output_ends_only_after_the_keeper_and_the_writer_are_gone() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "t").unwrap();
        let fifos = dir.make_fifos("t", false).unwrap();
        let mut keepers = Vec::new();
        let receiver = open_output(&fifos.stdout, Attach::NewProcess, &mut keepers).unwrap();
        assert_eq!(keepers.len(), 1);
        let captured = Captured::default();
        let copy = tokio::spawn(copy_output(receiver, captured.clone()));

        // Nobody but the keeper has written yet: the copy must not have ended.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!copy.is_finished());

        // The "process" opens its end (as the shim does, read-write), writes, and exits.
        let mut writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifos.stdout)
            .unwrap();
        keepers.clear();
        writer.write_all(b"hello\n").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!copy.is_finished(), "ended while the writer was open");
        drop(writer);
        tokio::time::timeout(Duration::from_secs(5), copy)
            .await
            .expect("the copy ends when the last writer is gone")
            .unwrap();
        assert_eq!(captured.0.lock().unwrap().as_slice(), b"hello\n");
    }

    #[tokio::test]
    async fn stdin_is_written_and_its_end_closes_the_fifo() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "t").unwrap();
        let fifos = dir.make_fifos("t", false).unwrap();
        let sink = open_stdin(&fifos.stdin, Attach::NewProcess)
            .unwrap()
            .expect("a new process's stdin always opens");
        // The shim's side: read-only, non-blocking.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifos.stdin)
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (closed_tx, closed_rx) = oneshot::channel();
        let copy = tokio::spawn(copy_stdin(rx, sink, closed_tx));
        tx.send(b"typed".to_vec()).await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), closed_rx)
            .await
            .unwrap()
            .unwrap();
        copy.await.unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"typed");
    }

    #[tokio::test]
    async fn an_existing_process_without_a_stdin_reader_gets_no_stdin() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "t").unwrap();
        let fifos = dir.make_fifos("t", false).unwrap();
        assert!(open_stdin(&fifos.stdin, Attach::Existing)
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn finish_gives_up_after_the_grace_period() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "t").unwrap();
        let fifos = dir.make_fifos("t", false).unwrap();
        let io = ProcessIo::open(&fifos, Attach::NewProcess, false).unwrap();
        // A writer that never goes away (a background process holding the output).
        let _writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifos.stdout)
            .unwrap();
        let started = std::time::Instant::now();
        assert!(!io.finish(Duration::from_millis(200)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
