//! Building a container's OCI runtime spec on the client side, as ctr does: berthd
//! stores it in the container record and the shim runs it unchanged.
//!
//! - [`flags`]: the spec-shaping flags `run` and `containers create` share, and the
//!   parsing of their values (`--mount`, `--memory`, `--cpus`, `--env-file`).
//! - [`rootfs_view`]: a read-only view of the image's root filesystem, mounted for a
//!   moment so that `USER` names resolve against the image's own `/etc/passwd`.
//! - [`build_spec`]: defaults, then the image's config, then the flags.

pub mod flags;
pub mod rootfs_view;

use std::path::Path;

use berth_runtime::oci_spec::image::Config as ImageConfig;
use berth_runtime::oci_spec::runtime::{Mount, Spec};
use berth_runtime::spec as oci;

pub use flags::ContainerFlags;

/// Why a spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The image's config or a flag could not be applied (no command, unknown user, …).
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// A flag's value is unusable.
    #[error("{0}")]
    BadFlag(String),
    /// A file named by a flag could not be read.
    #[error("reading {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What a spec is built from besides the flags.
#[derive(Debug)]
pub struct SpecInputs<'a> {
    /// The namespace the container lives in (part of its cgroup path).
    pub namespace: &'a str,
    /// The container id.
    pub id: &'a str,
    /// The image's runtime config (`config` of the image config JSON), if it has one.
    pub image_config: Option<&'a ImageConfig>,
    /// Where the image's root filesystem can be read (for users and groups).
    pub rootfs: &'a Path,
    /// The command line given after the image and id; replaces the image's `Cmd`.
    pub args: &'a [String],
}

/// The cgroup a container of `namespace` named `id` gets, as ctr gives it.
pub fn cgroups_path(namespace: &str, id: &str) -> String {
    format!("/{namespace}/{id}")
}

/// Builds the spec: containerd-like defaults, the cgroup `/<namespace>/<id>`, the image's
/// command, environment, working directory and user, then each flag on top (a flag wins
/// over the image).
pub fn build_spec(flags: &ContainerFlags, inputs: &SpecInputs<'_>) -> Result<Spec, SpecError> {
    let mut spec = oci::default_spec();
    oci::with_cgroups_path(&mut spec, cgroups_path(inputs.namespace, inputs.id));
    let empty = ImageConfig::default();
    let image_config = inputs.image_config.unwrap_or(&empty);
    oci::apply_image_config(&mut spec, image_config, inputs.rootfs, inputs.args)?;

    if flags.tty {
        oci::with_tty(&mut spec, true);
    }
    if let Some(path) = &flags.env_file {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        oci::with_env(&mut spec, flags::env_file_entries(&text));
    }
    oci::with_env(&mut spec, &flags.env);
    if let Some(cwd) = &flags.cwd {
        if !cwd.starts_with('/') {
            return Err(SpecError::BadFlag(format!(
                "--cwd {cwd:?}: the working directory must be an absolute path"
            )));
        }
        oci::with_cwd(&mut spec, cwd);
    }
    if let Some(user) = &flags.user {
        oci::with_user(&mut spec, inputs.rootfs, user)?;
    }
    for mount in &flags.mounts {
        oci::with_mount(&mut spec, mount.to_oci()?);
    }
    if flags.net_host {
        with_host_network(&mut spec);
    }
    if let Some(hostname) = &flags.hostname {
        oci::with_hostname(&mut spec, hostname);
    }
    if let Some(cpus) = flags.cpus {
        let (quota, period) = flags::cpu_quota(cpus)?;
        oci::with_cpu_quota(&mut spec, quota, period);
    }
    if let Some(bytes) = flags.memory {
        let bytes = i64::try_from(bytes)
            .map_err(|_| SpecError::BadFlag(format!("--memory {bytes} is too large")))?;
        oci::with_memory_limit(&mut spec, bytes);
    }
    if let Some(limit) = flags.pids_limit {
        oci::with_pids_limit(&mut spec, limit);
    }
    if flags.read_only {
        oci::with_rootfs(&mut spec, "rootfs", true);
    }
    Ok(spec)
}

/// The host's network, as ctr's `--net-host` gives it: no network namespace, the host's
/// hostname, and its `/etc/hosts` and `/etc/resolv.conf` (read-only) so names resolve
/// as they do on the host.
fn with_host_network(spec: &mut Spec) {
    oci::with_host_network(spec);
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            oci::with_hostname(spec, name);
        }
    }
    for file in ["/etc/hosts", "/etc/resolv.conf"] {
        if Path::new(file).is_file() {
            let mut mount = Mount::default();
            mount
                .set_destination(file.into())
                .set_typ(Some("bind".into()))
                .set_source(Some(file.into()))
                .set_options(Some(vec!["rbind".into(), "ro".into()]));
            oci::with_mount(spec, mount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::oci_spec::runtime::LinuxNamespaceType;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        flags: ContainerFlags,
    }

    fn flags(args: &[&str]) -> ContainerFlags {
        Harness::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        dir
    }

    fn image_config(json: &str) -> ImageConfig {
        serde_json::from_str(json).unwrap()
    }

    fn build(args: &[&str], config: &str, command: &[&str]) -> Result<Spec, SpecError> {
        let rootfs = rootfs();
        let config = image_config(config);
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        build_spec(
            &flags(args),
            &SpecInputs {
                namespace: "ns1",
                id: "c1",
                image_config: Some(&config),
                rootfs: rootfs.path(),
                args: &command,
            },
        )
    }

    fn env(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn the_image_gives_the_command_and_the_arguments_replace_its_cmd() {
        let spec = build(&[], r#"{"Cmd":["sh"],"Env":["A=image"]}"#, &[]).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref().unwrap(), ["sh"]);
        assert!(env(&spec).contains(&"A=image".to_string()));
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/ns1/c1"))
        );

        let spec = build(&[], r#"{"Cmd":["sh"]}"#, &["echo", "hello"]).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_deref().unwrap(),
            ["echo", "hello"]
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let err = build(&[], "{}", &[]).unwrap_err();
        assert!(err.to_string().contains("no command"), "{err}");
    }

    #[test]
    fn env_cwd_tty_and_user_flags_win_over_the_image() {
        let spec = build(
            &[
                "--env", "A=flag", "--env", "B=2", "--cwd", "/tmp", "-t", "--user", "app",
            ],
            r#"{"Cmd":["sh"],"Env":["A=image"],"WorkingDir":"/srv","User":"root"}"#,
            &[],
        )
        .unwrap();
        let process = spec.process().as_ref().unwrap();
        let env = env(&spec);
        assert!(env.contains(&"A=flag".to_string()) && !env.contains(&"A=image".to_string()));
        assert!(env.contains(&"B=2".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert_eq!(process.cwd(), Path::new("/tmp"));
        assert_eq!(process.terminal(), Some(true));
        let user = process.user();
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
        assert_eq!(user.additional_gids().as_deref(), Some(&[10][..]));

        let err = build(&["--user", "nobody"], r#"{"Cmd":["sh"]}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
        let err = build(&["--cwd", "relative"], r#"{"Cmd":["sh"]}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn limits_mounts_and_host_network() {
        let spec = build(
            &[
                "--cpus",
                "0.5",
                "--memory",
                "64m",
                "--net-host",
                "--mount",
                "type=bind,src=/tmp,dst=/host-tmp,options=rbind:ro",
                "--read-only",
            ],
            r#"{"Cmd":["sh"]}"#,
            &[],
        )
        .unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
        let cpu = resources.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        let namespaces: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(!namespaces.contains(&LinuxNamespaceType::Network));
        let mounts = spec.mounts().as_ref().unwrap();
        let bind = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/host-tmp"))
            .unwrap();
        assert_eq!(bind.source().as_deref(), Some(Path::new("/tmp")));
        assert_eq!(
            bind.options().as_deref().unwrap(),
            ["rbind".to_string(), "ro".to_string()]
        );
        if Path::new("/etc/resolv.conf").is_file() {
            assert!(mounts
                .iter()
                .any(|m| m.destination() == Path::new("/etc/resolv.conf")));
        }
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    }
}
