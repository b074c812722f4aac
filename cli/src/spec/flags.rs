//! The flags that shape a new container, shared by `run` and `containers create`, and
//! the parsing of their values.

use std::path::PathBuf;
use std::str::FromStr;

use berth_runtime::oci_spec::runtime::Mount;

use super::SpecError;

/// The runtime a container runs under unless `--runtime` says otherwise.
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";

/// The snapshotter a container's root filesystem comes from unless told otherwise.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// The CFS period `--cpus` is expressed in, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// How a new container is made: its spec, runtime, snapshotter and labels.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerFlags {
    /// Give the process a terminal (stdin and stdout then go through it).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE; a bare KEY removes it). Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file, one KEY=VALUE a line ('#' starts a comment).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Add a mount: type=bind,src=/host/dir,dst=/in/container,options=rbind:ro. Repeatable.
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<MountFlag>,
    /// The working directory of the process inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Run as this user: name, uid, name:group or uid:gid (names from the image).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Use the host's network instead of a network namespace of its own.
    #[arg(long)]
    pub net_host: bool,
    /// Set the container's hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Limit CPU time to this many CPUs (e.g. 0.5, 2).
    #[arg(long, value_name = "N.N")]
    pub cpus: Option<f64>,
    /// Limit memory (bytes, or with a unit: 512k, 64m, 1g).
    #[arg(long, alias = "memory-limit", value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Limit the number of processes in the container.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// The runtime (shim) the container runs under.
    #[arg(long, default_value = DEFAULT_RUNTIME)]
    pub runtime: String,
    /// The OCI runtime binary the shim runs (e.g. /usr/bin/crun or a wrapper).
    #[arg(long, value_name = "PATH")]
    pub runc_binary: Option<String>,
    /// The snapshotter the container's root filesystem comes from.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    pub snapshotter: String,
    /// Set a label on the container (KEY=VALUE). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

/// One `--mount` flag: `type=…,src=…,dst=…,options=a:b` (also `source`, `destination`,
/// `target`). The type defaults to `bind`, and a bind mount without `bind`/`rbind` in its
/// options gets `rbind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    /// Filesystem type (`bind`, `tmpfs`, …).
    pub kind: String,
    /// The source (a host path for a bind mount).
    pub source: String,
    /// Where it appears in the container (absolute).
    pub destination: String,
    /// Mount options.
    pub options: Vec<String>,
}

impl FromStr for MountFlag {
    type Err = String;

    fn from_str(text: &str) -> Result<MountFlag, String> {
        let mut kind = None;
        let mut source = None;
        let mut destination = None;
        let mut options = Vec::new();
        for field in text.split(',').filter(|f| !f.is_empty()) {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("mount field {field:?} is not key=value"))?;
            match key {
                "type" => kind = Some(value.to_string()),
                "src" | "source" => source = Some(value.to_string()),
                "dst" | "destination" | "target" => destination = Some(value.to_string()),
                "options" => options.extend(
                    value
                        .split(':')
                        .filter(|o| !o.is_empty())
                        .map(str::to_string),
                ),
                other => {
                    return Err(format!(
                        "unknown mount field {other:?} (use type, src, dst, options)"
                    ))
                }
            }
        }
        let destination = destination.ok_or("the mount has no dst=")?;
        if !destination.starts_with('/') {
            return Err(format!(
                "mount dst {destination:?} must be an absolute path"
            ));
        }
        let kind = kind.unwrap_or_else(|| "bind".to_string());
        let source = source.unwrap_or_else(|| kind.clone());
        if kind == "bind" {
            if !source.starts_with('/') {
                return Err(format!(
                    "bind mount src {source:?} must be an absolute path"
                ));
            }
            if !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.insert(0, "rbind".to_string());
            }
        }
        Ok(MountFlag {
            kind,
            source,
            destination,
            options,
        })
    }
}

impl MountFlag {
    /// The OCI mount; a bind mount's source must exist on this host.
    pub fn to_oci(&self) -> Result<Mount, SpecError> {
        if self.kind == "bind" && !std::path::Path::new(&self.source).exists() {
            return Err(SpecError::BadFlag(format!(
                "--mount: bind source {} does not exist",
                self.source
            )));
        }
        let mut mount = Mount::default();
        mount
            .set_destination(self.destination.clone().into())
            .set_typ(Some(self.kind.clone()))
            .set_source(Some(self.source.clone().into()))
            .set_options(Some(self.options.clone()));
        Ok(mount)
    }
}

/// Parses a size: bytes, or a number with a unit `k`, `m`, `g`, `t` (powers of 1024;
/// `kb`, `kib`, `b` spellings accepted, case ignored), e.g. `64m`, `1.5g`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let bad = || format!("{text:?} is not a size: write bytes or e.g. 512k, 64m, 1g");
    let split = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// The CFS quota and period for `cpus` CPUs.
pub fn cpu_quota(cpus: f64) -> Result<(i64, u64), SpecError> {
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1024.0 {
        return Err(SpecError::BadFlag(format!(
            "--cpus {cpus}: give a positive number of CPUs such as 0.5 or 2"
        )));
    }
    let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
    Ok((quota.max(1000), CPU_PERIOD_US))
}

/// The `KEY=VALUE` entries of an env file: blank lines and `#` comments skipped.
pub fn env_file_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_read_like_ctr() {
        let mount: MountFlag = "type=bind,src=/srv,dst=/data,options=rbind:ro"
            .parse()
            .unwrap();
        assert_eq!(
            mount,
            MountFlag {
                kind: "bind".into(),
                source: "/srv".into(),
                destination: "/data".into(),
                options: vec!["rbind".into(), "ro".into()],
            }
        );
        let mount: MountFlag = "source=/srv,target=/data,options=ro".parse().unwrap();
        assert_eq!(mount.kind, "bind");
        assert_eq!(mount.options, ["rbind", "ro"]);
        let tmpfs: MountFlag = "type=tmpfs,dst=/scratch,options=size=1m".parse().unwrap();
        assert_eq!(tmpfs.source, "tmpfs");
        assert_eq!(tmpfs.options, ["size=1m"]);
    }

    #[test]
    fn bad_mounts_say_what_is_wrong() {
        for (text, wanted) in [
            ("src=/srv", "no dst"),
            ("src=/srv,dst=data", "absolute"),
            ("src=srv,dst=/data", "absolute"),
            ("src=/srv,dst=/data,colour=red", "unknown mount field"),
            ("src=/srv,dst=/data,ro", "not key=value"),
        ] {
            let err = text.parse::<MountFlag>().unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        let missing: MountFlag = "src=/no/such/dir/anywhere,dst=/data".parse().unwrap();
        let err = missing.to_oci().unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        for bad in ["", "m", "-1m", "12x", "0"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cpus_become_a_quota_per_period() {
        assert_eq!(cpu_quota(0.5).unwrap(), (50_000, 100_000));
        assert_eq!(cpu_quota(2.0).unwrap(), (200_000, 100_000));
        assert!(cpu_quota(0.0).is_err());
        assert!(cpu_quota(-1.0).is_err());
        assert!(cpu_quota(f64::NAN).is_err());
    }

    #[test]
    fn env_files_skip_comments_and_blank_lines() {
        assert_eq!(
            env_file_entries("# comment\nA=1\n\n  B=two words  \n"),
            ["A=1", "B=two words"]
        );
    }
}
