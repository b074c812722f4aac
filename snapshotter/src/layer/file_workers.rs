//! A small pool of threads that create regular files while the main thread keeps
//! decompressing and parsing the layer.
//!
//! Creating a file is the expensive part of extraction on ext4 (inode allocation), and it
//! is independent from file to file as long as the parent directory exists. The main
//! thread creates every directory itself, hands each small regular file (with its data
//! already read) to the pool, and waits for the pool to drain ([`FilePool::drain`])
//! before any step that depends on earlier files: a hard link, a removal, a second entry
//! for the same path. Memory is bounded by a byte budget for queued data.
//!
//! A worker never replaces anything: if the name exists it hands the job back, and the
//! main thread replaces the old object at the next drain.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::error::{display_name, LayerError};
use super::metadata::{self, Attributes, Creator};
use super::root_dir::DirHandle;

/// Bytes of file data that may wait in the queue at once.
const QUEUE_BUDGET: u64 = 32 << 20;
/// What each job counts against the budget at least, so that empty files are bounded too.
const MIN_JOB_COST: u64 = 4096;

/// One regular file to create.
pub(crate) struct FileJob {
    /// Its parent directory.
    pub parent: Arc<DirHandle>,
    /// Its name in the parent.
    pub name: CString,
    /// Its path relative to the root, for messages.
    pub path: Vec<u8>,
    /// Its whole content.
    pub data: Vec<u8>,
    /// Its metadata.
    pub attrs: Attributes,
}

impl FileJob {
    fn cost(&self) -> u64 {
        (self.data.len() as u64).max(MIN_JOB_COST)
    }
}

/// Why creating a file did not succeed.
pub(crate) enum CreateError {
    /// Something already has that name (nothing was changed).
    Exists,
    /// Anything else.
    Failed(LayerError),
}

/// Creates the regular file described by `job` with `O_CREAT | O_EXCL | O_NOFOLLOW`,
/// writes its content and applies its metadata through the new fd.
pub(crate) fn create_file(job: &FileJob, creator: &Creator) -> Result<(), CreateError> {
    let file = open_new_file(&job.parent, &job.name, &job.attrs, &job.path)?;
    let mut file = File::from(file);
    file.write_all(&job.data).map_err(|e| {
        CreateError::Failed(LayerError::io(
            format!("write {}", display_name(&job.path)),
            e,
        ))
    })?;
    finish_file(&file, &job.parent, &job.attrs, creator, &job.path).map_err(CreateError::Failed)
}

/// Creates an empty regular file for writing; `Exists` if the name is taken (by anything,
/// including a symlink, which is never followed).
pub(crate) fn open_new_file(
    parent: &DirHandle,
    name: &CString,
    attrs: &Attributes,
    path: &[u8],
) -> Result<std::os::fd::OwnedFd, CreateError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(
        &parent.fd,
        name.as_c_str(),
        flags,
        Mode::from_raw_mode(attrs.mode & 0o777),
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::EXIST) => Err(CreateError::Exists),
        Err(err) => Err(CreateError::Failed(LayerError::io(
            format!("create file {}", display_name(path)),
            std::io::Error::from_raw_os_error(err.raw_os_error()),
        ))),
    }
}

/// Applies metadata and times to a freshly written file.
pub(crate) fn finish_file(
    file: &File,
    parent: &DirHandle,
    attrs: &Attributes,
    creator: &Creator,
    path: &[u8],
) -> Result<(), LayerError> {
    metadata::apply_to_fd(file.as_fd(), attrs, creator, parent.setgid, false, path)?;
    metadata::set_times_fd(file.as_fd(), &attrs.timestamps(), path)
}

#[derive(Default)]
struct State {
    queued_bytes: u64,
    queued_jobs: usize,
    handed_back: Vec<FileJob>,
    error: Option<LayerError>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    abort: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a worker panicked; the join reports that.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The pool; lives inside a [`std::thread::scope`].
pub(crate) struct FilePool<'scope> {
    sender: Option<Sender<FileJob>>,
    shared: Arc<Shared>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> FilePool<'scope> {
    /// Starts `count` workers (at least one) in `scope`.
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>, count: usize, creator: Creator) -> Self {
        let (sender, receiver) = mpsc::channel::<FileJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            abort: AtomicBool::new(false),
        });
        let workers = (0..count.max(1))
            .map(|_| {
                let receiver = receiver.clone();
                let shared = shared.clone();
                scope.spawn(move || work(&receiver, &shared, &creator))
            })
            .collect();
        FilePool {
            sender: Some(sender),
            shared,
            workers,
        }
    }

    /// Queues a file, waiting while the queue is over its byte budget. Reports an error a
    /// worker met since the last call.
    pub fn submit(&self, job: FileJob) -> Result<(), LayerError> {
        let cost = job.cost();
        let mut state = self.shared.lock();
        while state.queued_jobs > 0
            && state.queued_bytes + cost > QUEUE_BUDGET
            && state.error.is_none()
        {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(err) = state.error.take() {
            return Err(err);
        }
        state.queued_bytes += cost;
        state.queued_jobs += 1;
        drop(state);
        let sender = self.sender.as_ref().expect("pool used after shutdown");
        sender.send(job).map_err(|_| LayerError::WorkerPanicked)
    }

    /// Waits until every queued file is written. Returns the jobs whose name already
    /// existed, for the caller to replace, or the first error.
    pub fn drain(&self) -> Result<Vec<FileJob>, LayerError> {
        let mut state = self.shared.lock();
        while state.queued_jobs > 0 && state.error.is_none() {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(err) = state.error.take() {
            return Err(err);
        }
        Ok(std::mem::take(&mut state.handed_back))
    }

    /// Stops the workers (skipping queued work if `abandon`) and waits for them.
    pub fn shutdown(mut self, abandon: bool) -> Result<(), LayerError> {
        if abandon {
            self.shared.abort.store(true, Ordering::Relaxed);
        }
        self.sender = None;
        let mut panicked = false;
        for worker in self.workers.drain(..) {
            panicked |= worker.join().is_err();
        }
        if panicked {
            return Err(LayerError::WorkerPanicked);
        }
        Ok(())
    }
}

fn work(receiver: &Mutex<Receiver<FileJob>>, shared: &Shared, creator: &Creator) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        let cost = job.cost();
        let outcome = if shared.abort.load(Ordering::Relaxed) {
            Ok(())
        } else {
            create_file(&job, creator)
        };
        let mut state = shared.lock();
        state.queued_bytes -= cost;
        state.queued_jobs -= 1;
        match outcome {
            Ok(()) => {}
            Err(CreateError::Exists) => state.handed_back.push(job),
            Err(CreateError::Failed(err)) => {
                shared.abort.store(true, Ordering::Relaxed);
                if state.error.is_none() {
                    state.error = Some(err);
                }
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}
