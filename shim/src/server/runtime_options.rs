//! The task's runtime options: `CreateTaskRequest.options`, an `Any` holding
//! `containerd.runc.v1.Options` (ctr's `--runc-binary X` arrives as `binary_name = X`).
//!
//! The options that decide how to reach the container again (the binary, systemd cgroups)
//! are kept in `bundle/options.json`, so `berth-shim delete` drives the same runtime after
//! the shim is gone.

use std::path::{Path, PathBuf};

use berth_proto::containerd::runc::v1::Options;
use serde::{Deserialize, Serialize};

use crate::server::{RuntimeSettings, ShimError};

/// File name of the remembered options inside the bundle.
pub(crate) const OPTIONS_FILE: &str = "options.json";

/// Largest options file read back.
const MAX_OPTIONS_BYTES: u64 = 64 * 1024;

/// The runtime options the shim honours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RuntimeOptions {
    /// Runtime binary named by the task (wins over `--runtime-binary`); empty for none.
    #[serde(default)]
    pub binary_name: String,
    /// Let systemd manage the container's cgroups.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// Do not use pivot_root.
    #[serde(default)]
    pub no_pivot_root: bool,
}

impl RuntimeOptions {
    /// Decodes `CreateTaskRequest.options`: absent or empty means defaults; an `Any` of
    /// another type is refused.
    pub(crate) fn from_any(options: Option<&prost_types::Any>) -> Result<Self, ShimError> {
        let Some(any) = options else {
            return Ok(Self::default());
        };
        if any.type_url.is_empty() && any.value.is_empty() {
            return Ok(Self::default());
        }
        let options: Options = berth_proto::any::unpack(any).map_err(|e| {
            ShimError::InvalidArgument(format!("runtime options are not runc options: {e}"))
        })?;
        if !options.root.is_empty() {
            tracing::info!(
                root = options.root,
                "ignoring the runtime root in the options: berthd's root is used"
            );
        }
        Ok(Self {
            binary_name: options.binary_name,
            systemd_cgroup: options.systemd_cgroup,
            no_pivot_root: options.no_pivot_root,
        })
    }

    /// The runtime binary: the task's own, else the shim's `--runtime-binary`, else `runc`.
    pub(crate) fn binary(&self, settings: &RuntimeSettings) -> PathBuf {
        if self.binary_name.is_empty() {
            settings.default_binary()
        } else {
            PathBuf::from(&self.binary_name)
        }
    }

    /// Remembers these options in the bundle.
    pub(crate) fn save(&self, bundle: &Path) -> Result<(), ShimError> {
        berth_runtime::write_json_atomically(&bundle.join(OPTIONS_FILE), self)?;
        Ok(())
    }

    /// The options remembered in the bundle, if any.
    pub(crate) fn load(bundle: &Path) -> Result<Option<Self>, ShimError> {
        use std::io::Read;
        let path = bundle.join(OPTIONS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ShimError::io("open", &path)(error)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_OPTIONS_BYTES)
            .read_to_end(&mut bytes)
            .map_err(ShimError::io("read", &path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ShimError::InvalidArgument(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(binary: Option<&str>) -> RuntimeSettings {
        RuntimeSettings {
            root: "/run/berth/runc/default".into(),
            binary: binary.map(PathBuf::from),
        }
    }

    #[test]
    fn the_tasks_binary_wins_then_the_flag_then_runc() {
        let any = berth_proto::any::pack(&Options {
            binary_name: "/usr/bin/crun".into(),
            systemd_cgroup: true,
            ..Options::default()
        });
        let options = RuntimeOptions::from_any(Some(&any)).unwrap();
        assert!(options.systemd_cgroup);
        assert_eq!(
            options.binary(&settings(Some("runc-flag"))),
            PathBuf::from("/usr/bin/crun")
        );
        let none = RuntimeOptions::from_any(None).unwrap();
        assert_eq!(
            none.binary(&settings(Some("runc-flag"))),
            PathBuf::from("runc-flag")
        );
        assert_eq!(none.binary(&settings(None)), PathBuf::from("runc"));
    }

    #[test]
    fn another_type_of_any_is_refused() {
        let any = berth_proto::any::pack(&berth_proto::containerd::events::TaskOom::default());
        let err = RuntimeOptions::from_any(Some(&any)).unwrap_err();
        assert!(matches!(err, ShimError::InvalidArgument(_)), "{err}");
        let empty = prost_types::Any::default();
        assert_eq!(
            RuntimeOptions::from_any(Some(&empty)).unwrap(),
            RuntimeOptions::default()
        );
    }

    #[test]
    fn options_survive_in_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()).unwrap(), None);
        let options = RuntimeOptions {
            binary_name: "crun".into(),
            systemd_cgroup: false,
            no_pivot_root: true,
        };
        options.save(dir.path()).unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()).unwrap(), Some(options));
    }
}
