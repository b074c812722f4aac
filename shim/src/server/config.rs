//! What a shim is told on its command line: which task it serves, where, and with which
//! OCI runtime. The binary parses flags into these; the library never reads flags itself.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::client::MAX_SOCKET_PATH_LEN;
use crate::server::ShimError;

/// Longest namespace accepted (containerd's limit).
const MAX_NAMESPACE_LEN: usize = 76;

/// The task a shim serves: its namespace, container id and bundle directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// The containerd namespace, e.g. `default`.
    pub namespace: String,
    /// The container id (also the runtime's container id).
    pub id: String,
    /// The bundle directory `<state>/tasks/<ns>/<id>`, holding `config.json` and `rootfs/`.
    pub bundle: PathBuf,
}

impl TaskIdentity {
    /// Checks the namespace and id grammar and that the bundle is an absolute path to a
    /// directory, so nothing malformed reaches a path or the runtime's command line.
    pub fn validate(&self) -> Result<(), ShimError> {
        validate_namespace(&self.namespace)?;
        berth_runtime::validate_container_id(&self.id)?;
        if !self.bundle.is_absolute() {
            return Err(ShimError::InvalidArgument(format!(
                "bundle {} is not an absolute path",
                self.bundle.display()
            )));
        }
        if !self.bundle.is_dir() {
            return Err(ShimError::InvalidArgument(format!(
                "bundle {} is not a directory",
                self.bundle.display()
            )));
        }
        Ok(())
    }

    /// The directory the container's root filesystem is mounted on.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }
}

/// Which OCI runtime to run, and where it keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// The runtime's `--root`: `<berthd state>/runc/<ns>`.
    pub root: PathBuf,
    /// The runtime binary from `--runtime-binary`; `runc` when absent. A task's own
    /// runtime options (`binary_name`) win over it.
    pub binary: Option<PathBuf>,
}

impl RuntimeSettings {
    /// The runtime binary to use when the task's options do not name one.
    pub fn default_binary(&self) -> PathBuf {
        self.binary.clone().unwrap_or_else(|| PathBuf::from("runc"))
    }

    /// Checks that the root is an absolute path.
    pub fn validate(&self) -> Result<(), ShimError> {
        if !self.root.is_absolute() {
            return Err(ShimError::InvalidArgument(format!(
                "runtime root {} is not an absolute path",
                self.root.display()
            )));
        }
        Ok(())
    }
}

/// Everything the daemon shim needs: `berth-shim start`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The task served.
    pub task: TaskIdentity,
    /// The OCI runtime.
    pub runtime: RuntimeSettings,
    /// The socket the task API is served on.
    pub socket: PathBuf,
    /// berthd's socket, where task events are published.
    pub publish_address: PathBuf,
    /// Most verbose level written to `shim.log`.
    pub log_level: tracing::Level,
}

impl DaemonConfig {
    /// Checks every field before anything is started.
    pub fn validate(&self) -> Result<(), ShimError> {
        self.task.validate()?;
        self.runtime.validate()?;
        check_socket_path("socket", &self.socket)?;
        check_socket_path("publish address", &self.publish_address)
    }
}

/// What a spare shim is told on its command line: it has no task until berthd assigns one
/// (see [`crate::server::spare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpareConfig {
    /// The socket served until the task is assigned (then renamed to the task's socket).
    pub socket: PathBuf,
    /// berthd's socket, where task events are published.
    pub publish_address: PathBuf,
    /// berthd's pid: a spare whose berthd exits before assigning it a task exits too.
    pub supervisor_pid: i32,
    /// Most verbose level written to the assigned task's `shim.log`.
    pub log_level: tracing::Level,
}

impl SpareConfig {
    /// Checks every field before anything is started.
    pub fn validate(&self) -> Result<(), ShimError> {
        if self.supervisor_pid <= 0 {
            return Err(ShimError::InvalidArgument(format!(
                "supervisor pid {} is not a process id",
                self.supervisor_pid
            )));
        }
        check_socket_path("socket", &self.socket)?;
        check_socket_path("publish address", &self.publish_address)
    }

    /// The daemon configuration of task `task`, served on `socket`, once assigned.
    pub fn assigned(
        &self,
        task: TaskIdentity,
        runtime: RuntimeSettings,
        socket: PathBuf,
    ) -> DaemonConfig {
        DaemonConfig {
            task,
            runtime,
            socket,
            publish_address: self.publish_address.clone(),
            log_level: self.log_level,
        }
    }
}

/// A socket path must be absolute (never an abstract address) and fit a unix address.
fn check_socket_path(what: &str, path: &Path) -> Result<(), ShimError> {
    if !path.is_absolute() {
        return Err(ShimError::InvalidArgument(format!(
            "{what} {} is not an absolute path",
            path.display()
        )));
    }
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(ShimError::InvalidArgument(format!(
            "{what} {} is {len} bytes long; unix sockets allow at most {MAX_SOCKET_PATH_LEN}",
            path.display()
        )));
    }
    Ok(())
}

/// Checks a namespace name: letters and digits, separated by single '.', '_' or '-',
/// at most 76 bytes. It becomes a directory name, so nothing else is allowed.
pub fn validate_namespace(namespace: &str) -> Result<(), ShimError> {
    let invalid = |why: &str| {
        Err(ShimError::InvalidArgument(format!(
            "namespace {namespace:?} {why}"
        )))
    };
    if namespace.is_empty() {
        return invalid("is empty");
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return invalid(&format!("is longer than {MAX_NAMESPACE_LEN} bytes"));
    }
    let mut previous_was_separator = true;
    for c in namespace.chars() {
        if c.is_ascii_alphanumeric() {
            previous_was_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return invalid("must be letters and digits separated by single '.', '_' or '-'");
        }
    }
    if previous_was_separator {
        return invalid("must end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_the_grammar() {
        for good in ["default", "k8s.io", "a-b_c.d", "x1"] {
            validate_namespace(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "..", "a b", &"n".repeat(77)] {
            assert!(validate_namespace(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_config_with_relative_or_long_paths_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = DaemonConfig {
            task: TaskIdentity {
                namespace: "default".into(),
                id: "t1".into(),
                bundle: dir.path().to_path_buf(),
            },
            runtime: RuntimeSettings {
                root: dir.path().join("runc"),
                binary: None,
            },
            socket: dir.path().join("s.sock"),
            publish_address: dir.path().join("berthd.sock"),
            log_level: tracing::Level::INFO,
        };
        good.validate().unwrap();

        let mut relative = good.clone();
        relative.socket = PathBuf::from("s.sock");
        assert!(relative.validate().is_err());

        let mut long = good.clone();
        long.socket = PathBuf::from(format!("/{}", "s".repeat(120)));
        let err = long.validate().unwrap_err().to_string();
        assert!(err.contains("at most 107"), "{err}");

        let mut bad_id = good.clone();
        bad_id.task.id = "../x".into();
        assert!(bad_id.validate().is_err());

        let mut missing_bundle = good;
        missing_bundle.task.bundle = dir.path().join("absent");
        assert!(missing_bundle.validate().is_err());
    }
}
