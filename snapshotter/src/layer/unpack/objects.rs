//! Creating each kind of archive entry (directories, files, links, device nodes).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{create_failure, cstring, errno_io, resolve_error, Unpacker, POOLED_FILE_LIMIT};
use crate::layer::archive::{Entry, EntryKind, TarReader};
use crate::layer::error::{display_name, LayerError};
use crate::layer::file_workers::{self, CreateError, FileJob};
use crate::layer::metadata::{self, Attributes};
use crate::layer::root_dir::{dir_flags, DirHandle};
use crate::layer::safe_path::{self, split_parent};

impl Unpacker<'_, '_> {
    pub(super) fn root_entry(&mut self, entry: &Entry) -> Result<(), LayerError> {
        if entry.kind != EntryKind::Directory {
            return Err(LayerError::unsafe_path(
                &entry.name,
                "it names the root but is not a directory",
            ));
        }
        let attrs = Attributes::from_entry(entry)?;
        let root = self.root.handle().clone();
        metadata::apply_to_fd(root.fd.as_fd(), &attrs, &self.creator, false, true, b".")?;
        self.deferred_times.push((Vec::new(), attrs.timestamps()));
        Ok(())
    }

    pub(super) fn directory(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), LayerError> {
        let attrs = Attributes::from_entry(entry)?;
        let mode = Mode::from_raw_mode(attrs.mode & 0o777);
        let mut existed = false;
        match rustix::fs::mkdirat(&parent.fd, name.as_c_str(), mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let stat =
                    rustix::fs::statat(&parent.fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| {
                            LayerError::io(format!("inspect {}", display_name(path)), errno_io(e))
                        })?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                    existed = true;
                } else {
                    self.clear_name(parent, name, path)?;
                    rustix::fs::mkdirat(&parent.fd, name.as_c_str(), mode).map_err(|e| {
                        LayerError::io(
                            format!("create directory {}", display_name(path)),
                            errno_io(e),
                        )
                    })?;
                }
            }
            Err(err) => {
                return Err(LayerError::io(
                    format!("create directory {}", display_name(path)),
                    errno_io(err),
                ))
            }
        }
        let fd = rustix::fs::openat(
            &parent.fd,
            name.as_c_str(),
            dir_flags() | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| {
            LayerError::io(
                format!("open directory {}", display_name(path)),
                errno_io(e),
            )
        })?;
        metadata::apply_to_fd(
            fd.as_fd(),
            &attrs,
            &self.creator,
            parent.setgid,
            existed,
            path,
        )?;
        self.deferred_times
            .push((path.to_vec(), attrs.timestamps()));
        let handle = DirHandle {
            fd,
            setgid: attrs.mode & 0o2000 != 0,
        };
        self.root.remember(path, Arc::new(handle));
        Ok(())
    }

    pub(super) fn regular(
        &mut self,
        reader: &mut TarReader<'_>,
        parent: Arc<DirHandle>,
        name: CString,
        path: Vec<u8>,
        entry: &Entry,
    ) -> Result<(), LayerError> {
        let attrs = Attributes::from_entry(entry)?;
        if entry.size <= POOLED_FILE_LIMIT {
            let data = reader.read_data("file data")?;
            let job = FileJob {
                parent,
                name,
                path,
                data,
                attrs,
            };
            return match self.pool {
                Some(pool) => pool.submit(job),
                None => self.write_file_now(job),
            };
        }
        let fd = match file_workers::open_new_file(&parent, &name, &attrs, &path) {
            Ok(fd) => fd,
            Err(CreateError::Exists) => {
                self.clear_name(&parent, &name, &path)?;
                file_workers::open_new_file(&parent, &name, &attrs, &path)
                    .map_err(|e| create_failure(e, &path))?
            }
            Err(CreateError::Failed(err)) => return Err(err),
        };
        let mut file = File::from(fd);
        reader.copy_data(&mut file, &format!("file {}", display_name(&path)))?;
        file_workers::finish_file(&file, &parent, &attrs, &self.creator, &path)
    }

    /// Writes a file on this thread, replacing whatever has its name.
    pub(super) fn write_file_now(&mut self, job: FileJob) -> Result<(), LayerError> {
        match file_workers::create_file(&job, &self.creator) {
            Ok(()) => Ok(()),
            Err(CreateError::Exists) => {
                self.clear_name(&job.parent, &job.name, &job.path)?;
                file_workers::create_file(&job, &self.creator)
                    .map_err(|e| create_failure(e, &job.path))
            }
            Err(CreateError::Failed(err)) => Err(err),
        }
    }

    pub(super) fn symlink(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), LayerError> {
        let attrs = Attributes::from_entry(entry)?;
        let target = entry.link_name.as_slice();
        self.create_replacing(parent, name, path, || {
            rustix::fs::symlinkat(target, &parent.fd, name.as_c_str())
        })?
        .map_err(|e| {
            LayerError::io(
                format!("create symlink {}", display_name(path)),
                errno_io(e),
            )
        })?;
        metadata::apply_at(
            parent.fd.as_fd(),
            name,
            &attrs,
            &self.creator,
            parent.setgid,
            true,
            path,
        )
    }

    pub(super) fn hardlink(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), LayerError> {
        // The target may be a file still in the queue.
        self.drain()?;
        let target = safe_path::normalize(&entry.link_name).map_err(|err| match err {
            LayerError::UnsafePath { reason, .. } => LayerError::UnsafePath {
                entry: format!(
                    "{} (hard link to {})",
                    entry.display_name(),
                    display_name(&entry.link_name)
                ),
                reason,
            },
            other => other,
        })?;
        if target.is_empty() {
            return Err(LayerError::unsafe_path(
                &entry.name,
                "it is a hard link to the root",
            ));
        }
        if target == path {
            return Ok(());
        }
        let missing = || LayerError::MissingLinkTarget {
            entry: entry.display_name(),
            target: display_name(&entry.link_name),
        };
        let (target_parent_path, target_name) = split_parent(&target);
        let target_parent = match self.root.resolve(target_parent_path) {
            Ok(handle) => handle,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(err) => return Err(resolve_error(err, target_parent_path, &entry.name)),
        };
        let target_name = cstring(target_name);
        // Flags 0: a symlink as target is linked itself, never followed.
        let link = || {
            rustix::fs::linkat(
                &target_parent.fd,
                target_name.as_c_str(),
                &parent.fd,
                name.as_c_str(),
                AtFlags::empty(),
            )
        };
        match self.create_replacing(parent, name, path, link)? {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(missing()),
            Err(err) => Err(LayerError::io(
                format!(
                    "hard link {} to {}",
                    display_name(path),
                    display_name(&target)
                ),
                errno_io(err),
            )),
        }
    }

    pub(super) fn special(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), LayerError> {
        let attrs = Attributes::from_entry(entry)?;
        let file_type = match entry.kind {
            EntryKind::CharDevice => FileType::CharacterDevice,
            EntryKind::BlockDevice => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let dev = rustix::fs::makedev(entry.device.0, entry.device.1);
        let mode = Mode::from_raw_mode(attrs.mode & 0o777);
        self.create_replacing(parent, name, path, || {
            rustix::fs::mknodat(&parent.fd, name.as_c_str(), file_type, mode, dev)
        })?
        .map_err(|e| LayerError::io(format!("create node {}", display_name(path)), errno_io(e)))?;
        metadata::apply_at(
            parent.fd.as_fd(),
            name,
            &attrs,
            &self.creator,
            parent.setgid,
            false,
            path,
        )
    }
}
