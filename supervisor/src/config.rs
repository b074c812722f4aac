//! Daemon settings: defaults, overridden by `/etc/berth/config.toml` (or `--config`),
//! overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default persistent root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// Default ephemeral state directory.
pub const DEFAULT_STATE: &str = "/run/berth";
/// Default config file, read if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";

/// What the config file may set; every key mirrors a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Persistent root (`--root`).
    pub root: Option<PathBuf>,
    /// Ephemeral state directory (`--state`).
    pub state: Option<PathBuf>,
    /// gRPC socket path (`--address`).
    pub address: Option<PathBuf>,
    /// Log filter (`--log-level`), e.g. `info` or `berthd=debug`.
    pub log_level: Option<String>,
    /// Largest blob a client may write, in bytes (`--max-blob-size`).
    pub max_blob_size: Option<u64>,
    /// The `berth-shim` binary tasks run under (`--shim-binary`).
    pub shim_binary: Option<PathBuf>,
    /// Shims kept started ahead of need (`--spare-shims`).
    pub spare_shims: Option<usize>,
}

/// Spare shims kept ready unless configured otherwise.
pub const DEFAULT_SPARE_SHIMS: usize = 1;

/// Most spare shims kept ready (each is an idle process of about 0.6 MiB).
pub const MAX_SPARE_SHIMS: usize = 16;

/// Default largest blob a client may write: 64 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 64 << 30;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("parsing config {path}: {source}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
}

impl FileConfig {
    /// Loads `path`; a missing file is an error only if `required` (it was named by a flag).
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The settings the daemon runs with, after defaults, file and flags are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Persistent root.
    pub root: PathBuf,
    /// Ephemeral state directory.
    pub state: PathBuf,
    /// gRPC socket path.
    pub address: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// Largest blob a client may write, in bytes.
    pub max_blob_size: u64,
    /// The `berth-shim` binary tasks run under.
    pub shim_binary: PathBuf,
    /// How many spare shims to keep started ahead of need.
    pub spare_shims: usize,
}

/// Flags as given on the command line (`None` = not given).
#[derive(Debug, Default)]
pub struct Flags {
    /// `--root`.
    pub root: Option<PathBuf>,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--address`.
    pub address: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--max-blob-size`.
    pub max_blob_size: Option<u64>,
    /// `--shim-binary`.
    pub shim_binary: Option<PathBuf>,
    /// `--spare-shims`.
    pub spare_shims: Option<usize>,
}

/// Name of the shim binary, looked for next to berthd, then on `PATH`.
pub const SHIM_BINARY_NAME: &str = "berth-shim";

/// The shim binary used when none is configured: `berth-shim` in the directory of the
/// running berthd executable if it is there (an install or a build puts both side by
/// side), else the bare name, which is looked up on `PATH` when run.
pub fn default_shim_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SHIM_BINARY_NAME)))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(SHIM_BINARY_NAME))
}

/// `path` made absolute against the current directory (unchanged if that fails).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

impl Settings {
    /// Merges flags over the file over the defaults. The socket defaults to
    /// `<state>/berthd.sock`, so a custom `--state` keeps instances apart.
    pub fn merge(flags: Flags, file: FileConfig) -> Self {
        let root = flags
            .root
            .or(file.root)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        let state = flags
            .state
            .or(file.state)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE));
        let address = flags
            .address
            .or(file.address)
            .unwrap_or_else(|| state.join("berthd.sock"));
        // Shims and the runtime are handed these paths and run in other directories: a
        // relative path given on the command line means one under berthd's start directory.
        let (root, state, address) = (absolute(root), absolute(state), absolute(address));
        let log_level = flags
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_string());
        let max_blob_size = flags
            .max_blob_size
            .or(file.max_blob_size)
            .unwrap_or(DEFAULT_MAX_BLOB_SIZE);
        let shim_binary = flags
            .shim_binary
            .or(file.shim_binary)
            .unwrap_or_else(default_shim_binary);
        let spare_shims = flags
            .spare_shims
            .or(file.spare_shims)
            .unwrap_or(DEFAULT_SPARE_SHIMS)
            .min(MAX_SPARE_SHIMS);
        Self {
            root,
            state,
            address,
            log_level,
            max_blob_size,
            shim_binary,
            spare_shims,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_over_defaults() {
        let file: FileConfig = toml::from_str("root = \"/r\"\nlog_level = \"debug\"\n").unwrap();
        let flags = Flags {
            root: Some("/flag".into()),
            ..Flags::default()
        };
        let s = Settings::merge(flags, file);
        assert_eq!(s.root, PathBuf::from("/flag"));
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.state, PathBuf::from(DEFAULT_STATE));
        assert_eq!(s.address, PathBuf::from(DEFAULT_STATE).join("berthd.sock"));
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let flags = Flags {
            root: Some("r".into()),
            state: Some("s".into()),
            ..Flags::default()
        };
        let s = Settings::merge(flags, FileConfig::default());
        let here = std::env::current_dir().unwrap();
        assert_eq!(s.root, here.join("r"));
        assert_eq!(s.state, here.join("s"));
        assert_eq!(s.address, here.join("s").join("berthd.sock"));
    }

    #[test]
    fn shim_binary_comes_from_flag_then_file_then_next_to_berthd() {
        let file: FileConfig = toml::from_str("shim_binary = \"/opt/file-shim\"\n").unwrap();
        let s = Settings::merge(
            Flags {
                shim_binary: Some("/opt/flag-shim".into()),
                ..Flags::default()
            },
            file,
        );
        assert_eq!(s.shim_binary, PathBuf::from("/opt/flag-shim"));
        let file: FileConfig = toml::from_str("shim_binary = \"/opt/file-shim\"\n").unwrap();
        let s = Settings::merge(Flags::default(), file);
        assert_eq!(s.shim_binary, PathBuf::from("/opt/file-shim"));
        // Neither: berth-shim beside the running executable if there, else the bare name.
        let s = Settings::merge(Flags::default(), FileConfig::default());
        assert_eq!(s.shim_binary, default_shim_binary());
        assert!(
            s.shim_binary == Path::new(SHIM_BINARY_NAME)
                || s.shim_binary.ends_with(SHIM_BINARY_NAME)
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("rooot = \"/x\"").is_err());
    }

    #[test]
    fn missing_optional_file_is_fine_but_required_is_not() {
        let p = Path::new("/nonexistent/berth/config.toml");
        assert!(FileConfig::load(p, false).is_ok());
        assert!(FileConfig::load(p, true).is_err());
    }
}
