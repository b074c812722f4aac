//! OCI bundles on disk: the bundle directory, its `config.json`, and other JSON files the
//! runtime reads (an exec's `process.json`, an update's resources).
//!
//! Files are written atomically (temporary file, rename) with mode 0600: a process crash
//! leaves the old file or the new one, and other users read neither; see
//! [`write_json_atomically`] for why there is no fsync.
//! Bundle directories are mode 0711 (CVE-2021-41103: no listing or reading by other users,
//! while a container running as another user can still reach its rootfs).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::{Process, Spec};
use serde::Serialize;

use crate::error::{Error, Result};

/// File name of the spec inside a bundle.
pub const CONFIG_FILE: &str = "config.json";

/// Mode of bundle directories.
pub const BUNDLE_DIR_MODE: u32 = 0o711;

/// Largest `config.json` read back (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Writes a bundle: creates `dir` (mode 0711, missing parents too), the rootfs directory when
/// `root.path` is relative, and `config.json` (mode 0600, atomically). Returns the path of
/// `config.json`.
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<PathBuf> {
    create_dir_with_mode(dir, BUNDLE_DIR_MODE)?;
    if let Some(root) = spec.root() {
        let rootfs = root.path();
        if rootfs.is_relative() && !rootfs.as_os_str().is_empty() {
            if rootfs
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::InvalidArgument(format!(
                    "root.path {} must stay inside the bundle",
                    rootfs.display()
                )));
            }
            // An existing rootfs (maybe already mounted) is the image's: leave its mode alone.
            let rootfs = dir.join(rootfs);
            match std::fs::DirBuilder::new()
                .mode(BUNDLE_DIR_MODE)
                .create(&rootfs)
            {
                Ok(()) => {
                    std::fs::set_permissions(&rootfs, PermissionsExt::from_mode(BUNDLE_DIR_MODE))
                        .map_err(Error::io("set mode on directory", &rootfs))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create rootfs directory", &rootfs)(e)),
            }
        }
    }
    let config = dir.join(CONFIG_FILE);
    write_json_atomically(&config, spec)?;
    Ok(config)
}

/// Reads the spec of the bundle in `dir`.
pub fn read_bundle_spec(dir: &Path) -> Result<Spec> {
    let path = dir.join(CONFIG_FILE);
    let file = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read", &path))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::parse(
            path.display().to_string(),
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::parse(path.display().to_string(), e))
}

/// Writes the OCI `process` of an exec to `path` (mode 0600, atomically), for
/// [`crate::ExecOpts::process_json_path`].
pub fn write_process_json(path: &Path, process: &Process) -> Result<()> {
    write_json_atomically(path, process)
}

/// Writes `value` as JSON to `path`: temporary file with mode 0600, renamed over `path`.
///
/// The rename means a reader never sees half a file, even if the writer dies midway. There
/// is deliberately no fsync: bundle files describe live processes (a spec to start, a shim's
/// pid, an exit status for the daemon to collect) and live under the state directory, which
/// a host crash makes meaningless, since it kills every process they describe. Syncing them
/// cost several disk flushes on every container start.
pub fn write_json_atomically<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::parse("JSON to write", e))?;
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{} is not a file path",
                path.display()
            )))
        }
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_then_rename(&temporary, path, &bytes);
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn write_then_rename(temporary: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temporary)
        .map_err(Error::io("create", temporary))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io("set mode 0600 on", temporary))?;
    file.write_all(bytes)
        .map_err(Error::io("write", temporary))?;
    std::fs::rename(temporary, path).map_err(Error::io("rename into place", path))
}

/// Creates `dir` and missing parents with `mode`, and sets `mode` on `dir` if it existed.
fn create_dir_with_mode(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(Error::io("create directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io("set mode on directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{default_spec, with_args};

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn bundle_dirs_are_0711_and_config_is_0600_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("tasks/default/c1");
        let mut spec = default_spec();
        with_args(&mut spec, ["echo", "hello"]);

        let config = write_bundle(&bundle, &spec).unwrap();
        assert_eq!(config, bundle.join("config.json"));
        assert_eq!(mode_of(&bundle), 0o711);
        assert_eq!(mode_of(&bundle.join("rootfs")), 0o711);
        assert_eq!(mode_of(&config), 0o600);
        assert_eq!(read_bundle_spec(&bundle).unwrap(), spec);

        // Rewriting replaces the file and leaves no temporary files behind.
        with_args(&mut spec, ["true"]);
        write_bundle(&bundle, &spec).unwrap();
        assert_eq!(read_bundle_spec(&bundle).unwrap(), spec);
        let mut names: Vec<_> = std::fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["config.json", "rootfs"]);
    }

    #[test]
    fn an_existing_lax_bundle_dir_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("c2");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o777)).unwrap();
        write_bundle(&bundle, &default_spec()).unwrap();
        assert_eq!(mode_of(&bundle), 0o711);
    }

    #[test]
    fn a_root_path_leaving_the_bundle_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = default_spec();
        let mut root = spec.root().clone().unwrap();
        root.set_path("../escape".into());
        spec.set_root(Some(root));
        let err = write_bundle(&tmp.path().join("c3"), &spec).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn process_json_is_written_privately() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("exec-e1.json");
        let process = default_spec().process().clone().unwrap();
        write_process_json(&path, &process).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let back: Process = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, process);
    }

    #[test]
    fn garbage_config_is_a_parse_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
        assert!(matches!(
            read_bundle_spec(tmp.path()),
            Err(Error::Parse { .. })
        ));
    }
}
