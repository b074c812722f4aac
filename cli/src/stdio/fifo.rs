//! The named pipes a task's process reads its stdin from and writes its output to.
//!
//! berthctl creates them in a private directory (mode 0700, so no other user can read a
//! container's output or type into it), names them in Tasks.Create or Tasks.Exec, and the
//! shim opens the other ends. The directory goes away with the [`FifoDir`] unless the
//! process outlives berthctl (a detached task), in which case `tasks rm` removes it
//! ([`remove_task_fifos`]).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};

use super::StdioError;

/// Where fifo directories are made when running as root.
pub const ROOT_FIFO_DIR: &str = "/run/berth/fifo";

/// The prefix of every fifo directory berthctl makes; `tasks rm` removes only those.
const DIR_PREFIX: &str = "berthctl-";

/// The directory fifo directories are made in: [`ROOT_FIFO_DIR`] for root, else
/// `$XDG_RUNTIME_DIR/berth/fifo` (a per-user tmpfs), else the temp directory.
pub fn default_fifo_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from(ROOT_FIFO_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("berth").join("fifo"),
        _ => std::env::temp_dir().join("berth-fifo"),
    }
}

/// The fifos of one process. With a terminal there is no stderr: the terminal carries
/// both output streams through stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFifos {
    /// The process's stdin: berthctl writes, the shim reads.
    pub stdin: PathBuf,
    /// The process's stdout (or its terminal's output).
    pub stdout: PathBuf,
    /// The process's stderr, absent with a terminal.
    pub stderr: Option<PathBuf>,
}

impl ProcessFifos {
    /// The paths as Tasks.Create and Tasks.Exec take them: stdin, stdout, stderr (empty
    /// for none).
    pub fn wire_paths(&self) -> (String, String, String) {
        let text = |path: &Path| path.to_string_lossy().into_owned();
        (
            text(&self.stdin),
            text(&self.stdout),
            self.stderr.as_deref().map(text).unwrap_or_default(),
        )
    }
}

/// Opens a detached process's output fifos for reading, without ever reading them, and
/// returns the open ends. Some shims (containerd's) open their ends write-only, which
/// waits for a reader; these ends are that reader until the process has started, then
/// the caller drops them and leaves the output to a later `tasks attach`.
pub fn hold_output_fifos(fifos: &ProcessFifos) -> Result<Vec<std::fs::File>, StdioError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::iter::once(&fifos.stdout)
        .chain(fifos.stderr.iter())
        .map(|path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(StdioError::io("opening the output fifo", path))
        })
        .collect()
}

/// A private directory holding fifos, removed (with its fifos) when dropped unless
/// [`FifoDir::keep`] was called.
#[derive(Debug)]
pub struct FifoDir {
    path: PathBuf,
    keep: bool,
}

impl FifoDir {
    /// Makes a fresh 0700 directory under `root` (created 0700 if missing) whose name
    /// starts with `berthctl-<label>-`.
    pub fn create(root: &Path, label: &str) -> Result<FifoDir, StdioError> {
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(StdioError::io("creating the fifo directory", root))?;
        }
        let path = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{label}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(root)
            .map_err(StdioError::io("creating a fifo directory in", root))?
            .keep();
        Ok(FifoDir { path, keep: false })
    }

    /// The directory.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the fifos of process `name` (a container or exec id): `<name>-stdin`,
    /// `<name>-stdout` and, without a terminal, `<name>-stderr`, each mode 0600.
    pub fn make_fifos(&self, name: &str, terminal: bool) -> Result<ProcessFifos, StdioError> {
        let make = |stream: &str| -> Result<PathBuf, StdioError> {
            let path = self.path.join(format!("{name}-{stream}"));
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .map_err(|e| StdioError::Io {
                what: "creating fifo".into(),
                path: path.clone(),
                source: e.into(),
            })?;
            Ok(path)
        };
        Ok(ProcessFifos {
            stdin: make("stdin")?,
            stdout: make("stdout")?,
            stderr: if terminal {
                None
            } else {
                Some(make("stderr")?)
            },
        })
    }

    /// Leaves the directory and its fifos on disk (for a process that outlives
    /// berthctl, to be attached to later) and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for FifoDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the fifos a task's process was given (`paths`, as Tasks.Get reports them),
/// and their directory when it is one berthctl made and is then empty. Anything that is
/// not a fifo is left alone, so a task created by another client with odd paths never
/// makes berthctl delete a file.
pub fn remove_task_fifos<'a>(paths: impl IntoIterator<Item = &'a str>) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for text in paths {
        let path = Path::new(text);
        if text.is_empty() || !path.is_absolute() {
            continue;
        }
        let is_fifo = std::fs::symlink_metadata(path)
            .map(|meta| meta.file_type().is_fifo())
            .unwrap_or(false);
        if !is_fifo {
            continue;
        }
        if std::fs::remove_file(path).is_ok() {
            if let Some(parent) = path.parent() {
                if !dirs.iter().any(|d| d == parent) {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
    }
    for dir in dirs {
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if ours {
            // Fails, harmlessly, while other fifos (an exec's) are still in it.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fifos_are_private_and_go_away_with_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let fifo_root = root.path().join("fifo");
        let dir = FifoDir::create(&fifo_root, "ns-c1").unwrap();
        assert_eq!(std::fs::metadata(&fifo_root).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with("berthctl-ns-c1-"), "{name}");

        let fifos = dir.make_fifos("c1", false).unwrap();
        for path in [&fifos.stdin, &fifos.stdout, fifos.stderr.as_ref().unwrap()] {
            let meta = std::fs::metadata(path).unwrap();
            assert!(meta.file_type().is_fifo(), "{path:?}");
            assert_eq!(meta.mode() & 0o777, 0o600);
        }
        let (stdin, stdout, stderr) = fifos.wire_paths();
        assert!(stdin.ends_with("/c1-stdin") && stdout.ends_with("/c1-stdout"));
        assert!(stderr.ends_with("/c1-stderr"));

        let tty = dir.make_fifos("e1", true).unwrap();
        assert_eq!(tty.stderr, None);
        assert_eq!(tty.wire_paths().2, "");

        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_kept_directory_is_removed_by_remove_task_fifos_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "c2").unwrap();
        let fifos = dir.make_fifos("c2", false).unwrap();
        let path = dir.keep();
        assert!(path.is_dir());

        // A regular file named as a stream is never deleted.
        let victim = root.path().join("precious");
        std::fs::write(&victim, "keep me").unwrap();
        let (stdin, stdout, stderr) = fifos.wire_paths();
        remove_task_fifos([
            stdin.as_str(),
            stdout.as_str(),
            stderr.as_str(),
            victim.to_str().unwrap(),
            "",
            "relative/path",
        ]);
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn held_output_fifos_let_a_write_only_opener_in() {
        let root = tempfile::tempdir().unwrap();
        let dir = FifoDir::create(root.path(), "held").unwrap();
        let fifos = dir.make_fifos("held", false).unwrap();
        let open_write_only = |path: &Path| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
        };
        // Without a reader, a write-only open fails (ENXIO) instead of waiting.
        assert!(open_write_only(&fifos.stdout).is_err());
        let held = hold_output_fifos(&fifos).unwrap();
        assert_eq!(held.len(), 2);
        assert!(open_write_only(&fifos.stdout).is_ok());
        assert!(open_write_only(fifos.stderr.as_ref().unwrap()).is_ok());
    }

    #[test]
    fn a_directory_berthctl_did_not_make_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let foreign = root.path().join("theirs");
        std::fs::create_dir(&foreign).unwrap();
        let fifo = foreign.join("out");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        remove_task_fifos([fifo.to_str().unwrap()]);
        assert!(!fifo.exists());
        assert!(foreign.is_dir());
    }
}
