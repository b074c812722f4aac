//! `berth-shim delete`: cleaning up a task whose shim is gone (berthd calls it at restart
//! for shims that died). The container is removed from the runtime (killed if still
//! running), its root filesystem unmounted, the recorded exit read, the bundle removed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_runtime::{Runtime, RuntimeConfig};

use crate::client::ExitInfo;
use crate::server::runtime_options::RuntimeOptions;
use crate::server::{exit_file, RuntimeSettings, ShimError, TaskIdentity};

/// The file berthd writes the shim's socket path to, in the bundle.
const ADDRESS_FILE: &str = "address";

/// Cleans up `task` and returns how its init ended: the recorded exit, or the synthetic
/// unknown one (pid 0, status 255, now). Problems that leave nothing behind (the runtime
/// no longer knows the container) are warnings on stderr; a root filesystem that stays
/// mounted is an error, and the bundle is then kept.
pub fn delete(task: &TaskIdentity, settings: &RuntimeSettings) -> Result<ExitInfo, ShimError> {
    crate::server::validate_namespace(&task.namespace)?;
    berth_runtime::validate_container_id(&task.id)?;
    settings.validate()?;
    let bundle = &task.bundle;

    let options = RuntimeOptions::load(bundle).unwrap_or_else(|error| {
        eprintln!("warning: ignoring unreadable runtime options: {error}");
        None
    });
    let options = options.unwrap_or_default();
    let config = RuntimeConfig {
        binary: options.binary(settings),
        root: settings.root.clone(),
        log: None,
        systemd_cgroup: options.systemd_cgroup,
    };
    match Runtime::new(config).and_then(|runtime| runtime.delete(&task.id, true)) {
        Ok(()) | Err(berth_runtime::Error::NotFound { .. }) => {}
        Err(error) => eprintln!("warning: runtime delete of {}: {error}", task.id),
    }

    berth_snapshot::mount::unmount_all(&task.rootfs())?;

    let exit = exit_file::read(bundle)
        .unwrap_or_else(|error| {
            eprintln!("warning: ignoring the exit file: {error}");
            None
        })
        .unwrap_or_else(|| ExitInfo::unknown(SystemTime::now()));

    if let Some(socket) = recorded_socket(bundle) {
        remove_shim_sockets(&socket);
    }
    match std::fs::remove_dir_all(bundle) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(ShimError::io("remove bundle", bundle)(error)),
    }
    Ok(exit)
}

/// The shim socket named in the bundle's `address` file, if it is an absolute path.
fn recorded_socket(bundle: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(bundle.join(ADDRESS_FILE)).ok()?;
    let path = PathBuf::from(text.trim().trim_start_matches("unix://"));
    path.is_absolute().then_some(path)
}

/// Removes the dead shim's socket and any console socket it left next to it
/// (`<socket stem>.c<N>`); only unix sockets are touched.
fn remove_shim_sockets(socket: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let (Some(dir), Some(stem)) = (socket.parent(), socket.file_stem()) else {
        return;
    };
    let console_prefix = format!("{}.c", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_console = name
            .strip_prefix(&console_prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let is_socket = entry.file_type().is_ok_and(|kind| kind.is_socket());
        if is_socket && (entry.path() == socket || is_console) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_shims_sockets_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("0123456789abcdef0123.sock");
        let bind =
            |name: &str| std::os::unix::net::UnixListener::bind(dir.path().join(name)).unwrap();
        let _listeners = [
            bind("0123456789abcdef0123.sock"),
            bind("0123456789abcdef0123.c1"),
            bind("0123456789abcdef0123.c12"),
            bind("ffff456789abcdef0123.sock"),
            bind("0123456789abcdef0123.cx"),
        ];
        std::fs::write(dir.path().join("0123456789abcdef0123.c2"), "not a socket").unwrap();
        remove_shim_sockets(&socket);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "0123456789abcdef0123.c2",
                "0123456789abcdef0123.cx",
                "ffff456789abcdef0123.sock"
            ]
        );
    }

    #[test]
    fn a_missing_bundle_reports_the_synthetic_exit() {
        let dir = tempfile::tempdir().unwrap();
        let task = TaskIdentity {
            namespace: "default".into(),
            id: "gone".into(),
            bundle: dir.path().join("tasks/default/gone"),
        };
        let settings = RuntimeSettings {
            root: dir.path().join("runc/default"),
            // A runtime that does nothing: `true` accepts any arguments.
            binary: Some("/bin/true".into()),
        };
        let exit = delete(&task, &settings).unwrap();
        assert_eq!((exit.pid, exit.exit_status), (0, 255));
    }
}
