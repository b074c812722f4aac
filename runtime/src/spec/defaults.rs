//! The default OCI spec of a Linux container: what a container gets unless the caller or the
//! image says otherwise. The choices follow what containerd gives its containers, so images
//! behave the same under Berth.

use std::collections::HashSet;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root,
    Spec, User,
};

/// The OCI runtime spec version written into `ociVersion` (what runc 1.1 and crun 1.8 read).
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The default `PATH` of a container process.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities a container process gets by default (bounding, effective and permitted).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths under /proc and /sys hidden from the container (they leak host information).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths under /proc the container may read but not write.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The spec of a fresh Linux container: rootfs `rootfs` (read-write), no command yet (set one
/// with [`super::with_args`] or [`super::apply_image_config`]), user root, cwd `/`, default
/// `PATH`, no terminal; pid, ipc, uts, mount and network namespaces; the usual mounts of
/// /proc, /dev, /sys; the default capabilities with empty inheritable and ambient sets
/// (CVE-2022-24769); NOFILE 1024; masked and read-only /proc paths; a device cgroup that
/// denies everything but the usual character devices. `linux.cgroupsPath` is left unset for
/// the caller ([`super::with_cgroups_path`]).
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    let mut root = Root::default();
    root.set_path("rootfs".into()).set_readonly(Some(false));
    spec.set_root(Some(root));
    spec.set_process(Some(default_process()));
    spec.set_hostname(None);
    spec.set_mounts(Some(default_mounts()));
    spec.set_annotations(None);
    spec.set_hooks(None);

    let mut linux = oci_spec::runtime::Linux::default();
    linux
        .set_namespaces(Some(default_namespaces()))
        .set_masked_paths(Some(MASKED_PATHS.iter().map(|p| p.to_string()).collect()))
        .set_readonly_paths(Some(READONLY_PATHS.iter().map(|p| p.to_string()).collect()))
        .set_resources(Some(default_resources()))
        .set_cgroups_path(None)
        .set_devices(None)
        .set_sysctl(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_rootfs_propagation(None)
        .set_mount_label(None);
    spec.set_linux(Some(linux));
    spec
}

fn default_process() -> Process {
    let mut process = Process::default();
    let capabilities: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(capabilities.clone()))
        .set_effective(Some(capabilities.clone()))
        .set_permitted(Some(capabilities))
        .set_inheritable(None)
        .set_ambient(None);
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("every field of the rlimit is set");
    process
        .set_terminal(Some(false))
        .set_user(User::default())
        .set_args(None)
        .set_env(Some(vec![DEFAULT_PATH_ENV.to_string()]))
        .set_cwd("/".into())
        .set_capabilities(Some(caps))
        .set_rlimits(Some(vec![nofile]))
        .set_no_new_privileges(Some(false));
    process
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(destination.into())
        .set_typ(Some(typ.to_string()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

/// The default mounts, in mount order.
fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

fn default_namespaces() -> Vec<LinuxNamespace> {
    [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        let mut namespace = LinuxNamespace::default();
        namespace.set_typ(typ).set_path(None);
        namespace
    })
    .collect()
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    rule
}

/// Deny every device, then allow mknod of any device node and use of the usual character
/// devices: null, zero, full, random, urandom, tty, console, ptmx and the pty slaves.
fn default_resources() -> LinuxResources {
    use LinuxDeviceType::{B, C};
    let char_device =
        |major: i64, minor: Option<i64>| device_rule(true, Some(C), Some(major), minor, "rwm");
    let devices = vec![
        device_rule(false, None, None, None, "rwm"),
        device_rule(true, Some(C), None, None, "m"),
        device_rule(true, Some(B), None, None, "m"),
        char_device(1, Some(3)),
        char_device(1, Some(5)),
        char_device(1, Some(7)),
        char_device(1, Some(8)),
        char_device(1, Some(9)),
        char_device(5, Some(0)),
        char_device(5, Some(1)),
        char_device(5, Some(2)),
        char_device(136, None),
    ];
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(devices));
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritable_and_ambient_capabilities_are_empty() {
        let spec = default_spec();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(caps.inheritable().as_ref().is_none_or(|set| set.is_empty()));
        assert!(caps.ambient().as_ref().is_none_or(|set| set.is_empty()));
        let expected: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
        assert_eq!(caps.bounding().as_ref(), Some(&expected));
        assert_eq!(caps.effective().as_ref(), Some(&expected));
        assert_eq!(caps.permitted().as_ref(), Some(&expected));
        assert!(!expected.contains(&Capability::SysAdmin));

        // What the runtime reads: no "inheritable" key at all in the written JSON.
        let json = serde_json::to_value(&spec).unwrap();
        let written = &json["process"]["capabilities"];
        assert!(written.get("inheritable").is_none(), "{written}");
        assert_eq!(written["bounding"].as_array().unwrap().len(), 14);
    }

    #[test]
    fn process_defaults_match_containerd() {
        let spec = default_spec();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(process.cwd().to_str(), Some("/"));
        assert_eq!(
            process.env().as_deref(),
            Some(&[DEFAULT_PATH_ENV.to_string()][..])
        );
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        assert_eq!(process.no_new_privileges(), Some(false));
        let rlimits = process.rlimits().as_ref().unwrap();
        assert_eq!(rlimits.len(), 1);
        assert_eq!(rlimits[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((rlimits[0].soft(), rlimits[0].hard()), (1024, 1024));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
        assert!(spec.hostname().is_none());
    }

    #[test]
    fn namespaces_mounts_and_paths() {
        let spec = default_spec();
        let linux = spec.linux().as_ref().unwrap();
        let namespaces: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(
            namespaces,
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Network
            ]
        );
        assert!(linux.cgroups_path().is_none());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".into()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".into()));

        let mounts = spec.mounts().as_ref().unwrap();
        let find = |dest: &str| {
            mounts
                .iter()
                .find(|m| m.destination().to_str() == Some(dest))
                .unwrap_or_else(|| panic!("no mount at {dest}"))
        };
        let options = |dest: &str| find(dest).options().clone().unwrap();
        assert_eq!(find("/proc").typ().as_deref(), Some("proc"));
        assert!(options("/dev").contains(&"size=65536k".into()));
        assert!(options("/dev/pts").contains(&"ptmxmode=0666".into()));
        assert!(options("/dev/pts").contains(&"gid=5".into()));
        assert!(options("/sys").contains(&"ro".into()));
        assert!(options("/sys/fs/cgroup").contains(&"ro".into()));
        assert_eq!(find("/dev/mqueue").typ().as_deref(), Some("mqueue"));
        assert_eq!(
            find("/dev/shm").source().as_ref().unwrap().to_str(),
            Some("shm")
        );
        // /dev comes before the mounts beneath it.
        let position = |dest: &str| {
            mounts
                .iter()
                .position(|m| m.destination().to_str() == Some(dest))
        };
        assert!(position("/dev") < position("/dev/pts"));
        assert!(position("/sys") < position("/sys/fs/cgroup"));
    }

    #[test]
    fn device_cgroup_denies_all_first_then_allows_the_usual_devices() {
        let spec = default_spec();
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let devices = resources.devices().as_ref().unwrap();
        let first = &devices[0];
        assert!(!first.allow());
        assert_eq!(first.access().as_deref(), Some("rwm"));
        assert!(first.typ().is_none() && first.major().is_none());
        let allowed = |major: i64, minor: i64| {
            devices.iter().any(|d| {
                d.allow()
                    && d.major() == Some(major)
                    && d.minor().is_none_or(|m| m == minor)
                    && d.access().as_deref() == Some("rwm")
            })
        };
        assert!(allowed(1, 3), "/dev/null");
        assert!(allowed(1, 9), "/dev/urandom");
        assert!(allowed(136, 4), "/dev/pts/4");
        assert!(!allowed(8, 0), "a disk");
    }
}
