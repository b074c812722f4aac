//! Small, composable edits of a spec: command line, environment, working directory, terminal,
//! hostname, mounts, resource limits, host network, cgroup path, rootfs.

use std::path::PathBuf;

use oci_spec::runtime::{
    Linux, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, Process, Root, Spec,
};

/// The spec's process, created with defaults if absent.
pub(crate) fn process_mut(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(Process::default)
}

fn linux_mut(spec: &mut Spec) -> &mut Linux {
    spec.linux_mut().get_or_insert_with(Linux::default)
}

fn resources_mut(spec: &mut Spec) -> &mut LinuxResources {
    linux_mut(spec)
        .resources_mut()
        .get_or_insert_with(LinuxResources::default)
}

/// Sets the process's command line (`args[0]` is the program).
pub fn with_args<I, S>(spec: &mut Spec, args: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    process_mut(spec).set_args(Some(args));
}

/// Merges `KEY=value` entries into the process environment: an entry replaces the one with the
/// same key or is appended; a bare `KEY` (no '=') removes that key.
pub fn with_env<I, S>(spec: &mut Spec, env: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let process = process_mut(spec);
    let mut merged = process.env().clone().unwrap_or_default();
    merge_env(&mut merged, env);
    process.set_env(Some(merged));
}

/// Applies `overrides` to `env` as [`with_env`] describes.
pub(crate) fn merge_env<I, S>(env: &mut Vec<String>, overrides: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    fn key(entry: &str) -> &str {
        entry.split_once('=').map_or(entry, |(key, _)| key)
    }
    for entry in overrides {
        let entry = entry.as_ref();
        let name = key(entry);
        if name.is_empty() {
            continue;
        }
        if entry.contains('=') {
            match env.iter_mut().find(|existing| key(existing) == name) {
                Some(existing) => *existing = entry.to_string(),
                None => env.push(entry.to_string()),
            }
        } else {
            env.retain(|existing| key(existing) != name);
        }
    }
}

/// Sets the working directory of the process (an absolute path inside the container).
pub fn with_cwd(spec: &mut Spec, cwd: impl Into<PathBuf>) {
    process_mut(spec).set_cwd(cwd.into());
}

/// Gives the process a terminal (or not); with one, `TERM=xterm` is set unless already set.
pub fn with_tty(spec: &mut Spec, tty: bool) {
    process_mut(spec).set_terminal(Some(tty));
    if tty {
        let has_term = process_mut(spec)
            .env()
            .as_ref()
            .is_some_and(|env| env.iter().any(|e| e.starts_with("TERM=")));
        if !has_term {
            with_env(spec, ["TERM=xterm"]);
        }
    }
}

/// Sets the container's hostname (in its own uts namespace).
pub fn with_hostname(spec: &mut Spec, hostname: impl Into<String>) {
    spec.set_hostname(Some(hostname.into()));
}

/// Adds `mount`, replacing any mount at the same destination.
pub fn with_mount(spec: &mut Spec, mount: Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|existing| existing.destination() != mount.destination());
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
}

/// Limits the container's memory to `bytes`.
pub fn with_memory_limit(spec: &mut Spec, bytes: i64) {
    let resources = resources_mut(spec);
    let mut memory = resources.memory().unwrap_or_default();
    memory.set_limit(Some(bytes));
    resources.set_memory(Some(memory));
}

/// Sets the container's relative CPU weight (cgroup v1 `cpu.shares`).
pub fn with_cpu_shares(spec: &mut Spec, shares: u64) {
    let resources = resources_mut(spec);
    let mut cpu = resources.cpu().clone().unwrap_or_default();
    cpu.set_shares(Some(shares));
    resources.set_cpu(Some(cpu));
}

/// Caps the container's CPU time to `quota` microseconds per `period` microseconds.
pub fn with_cpu_quota(spec: &mut Spec, quota: i64, period: u64) {
    let resources = resources_mut(spec);
    let mut cpu = resources.cpu().clone().unwrap_or_default();
    cpu.set_quota(Some(quota)).set_period(Some(period));
    resources.set_cpu(Some(cpu));
}

/// Limits the number of processes in the container.
pub fn with_pids_limit(spec: &mut Spec, limit: i64) {
    let mut pids = LinuxPids::default();
    pids.set_limit(limit);
    resources_mut(spec).set_pids(Some(pids));
}

/// Runs the container in the host's network namespace (drops the network namespace).
pub fn with_host_network(spec: &mut Spec) {
    let linux = linux_mut(spec);
    if let Some(namespaces) = linux.namespaces().clone() {
        let kept = namespaces
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        linux.set_namespaces(Some(kept));
    }
}

/// Sets `linux.cgroupsPath`, e.g. `/<namespace>/<id>` with cgroupfs or `slice:prefix:name`
/// with systemd.
pub fn with_cgroups_path(spec: &mut Spec, path: impl Into<PathBuf>) {
    linux_mut(spec).set_cgroups_path(Some(path.into()));
}

/// Sets the root filesystem: a path relative to the bundle (or absolute), and whether the
/// container sees it read-only.
pub fn with_rootfs(spec: &mut Spec, path: impl Into<PathBuf>, readonly: bool) {
    let mut root = Root::default();
    root.set_path(path.into()).set_readonly(Some(readonly));
    spec.set_root(Some(root));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_spec;

    fn env_of(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn env_entries_replace_append_and_remove() {
        let mut spec = default_spec();
        with_env(&mut spec, ["A=1", "PATH=/bin", "B=2"]);
        assert_eq!(env_of(&spec), ["PATH=/bin", "A=1", "B=2"]);
        with_env(&mut spec, ["A", "B=x=y", "=bad"]);
        assert_eq!(env_of(&spec), ["PATH=/bin", "B=x=y"]);
    }

    #[test]
    fn args_cwd_tty_hostname() {
        let mut spec = default_spec();
        with_args(&mut spec, ["sh", "-c", "exit 3"]);
        with_cwd(&mut spec, "/srv");
        with_tty(&mut spec, true);
        with_hostname(&mut spec, "box");
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref().unwrap(), ["sh", "-c", "exit 3"]);
        assert_eq!(process.cwd().to_str(), Some("/srv"));
        assert_eq!(process.terminal(), Some(true));
        assert!(env_of(&spec).contains(&"TERM=xterm".to_string()));
        assert_eq!(spec.hostname().as_deref(), Some("box"));

        // An image's TERM is kept.
        let mut spec = default_spec();
        with_env(&mut spec, ["TERM=vt100"]);
        with_tty(&mut spec, true);
        assert_eq!(
            env_of(&spec)
                .iter()
                .filter(|e| e.starts_with("TERM="))
                .count(),
            1
        );
    }

    #[test]
    fn a_mount_replaces_the_one_at_the_same_destination() {
        let mut spec = default_spec();
        let before = spec.mounts().as_ref().unwrap().len();
        let mut shm = Mount::default();
        shm.set_destination("/dev/shm".into())
            .set_typ(Some("tmpfs".into()))
            .set_source(Some("shm".into()))
            .set_options(Some(vec!["size=1g".into()]));
        with_mount(&mut spec, shm.clone());
        let mut data = Mount::default();
        data.set_destination("/data".into())
            .set_typ(Some("bind".into()))
            .set_source(Some("/srv/data".into()))
            .set_options(Some(vec!["rbind".into(), "ro".into()]));
        with_mount(&mut spec, data.clone());
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(mounts.len(), before + 1);
        let at_shm: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination().to_str() == Some("/dev/shm"))
            .collect();
        assert_eq!(at_shm, [&shm]);
        assert_eq!(mounts.last(), Some(&data));
    }

    #[test]
    fn limits_keep_the_device_rules() {
        let mut spec = default_spec();
        with_memory_limit(&mut spec, 64 << 20);
        with_cpu_shares(&mut spec, 512);
        with_cpu_quota(&mut spec, 50_000, 100_000);
        with_pids_limit(&mut spec, 32);
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
        let cpu = resources.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50_000), Some(100_000))
        );
        assert_eq!(resources.pids().unwrap().limit(), 32);
        assert!(!resources.devices().as_ref().unwrap().is_empty());
    }

    #[test]
    fn host_network_drops_only_the_network_namespace() {
        let mut spec = default_spec();
        with_host_network(&mut spec);
        let types: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(types.len(), 4);
        assert!(!types.contains(&LinuxNamespaceType::Network));
        assert!(types.contains(&LinuxNamespaceType::Pid));
    }

    #[test]
    fn cgroups_path_and_rootfs() {
        let mut spec = default_spec();
        with_cgroups_path(&mut spec, "/default/c1");
        with_rootfs(&mut spec, "/var/lib/rootfs", true);
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some("/default/c1".as_ref())
        );
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path().to_str(), Some("/var/lib/rootfs"));
        assert_eq!(root.readonly(), Some(true));
    }
}
