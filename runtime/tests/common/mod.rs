//! Shared fixtures of the root-only integration tests: a tiny busybox bundle, a runtime with a
//! private root in a temporary directory, and a guard that force-deletes the container.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::spec::{default_spec, with_args, with_cgroups_path};
use berth_runtime::{write_bundle, Runtime, RuntimeConfig, State, Status};

/// Host busybox, copied into every test rootfs.
const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the test rootfs.
const APPLETS: [&str; 6] = ["sh", "echo", "sleep", "true", "cat", "ls"];

/// True when the tests can drive a real runtime here (root, runc and a static busybox).
pub fn can_run_containers() -> bool {
    let root = rustix::process::geteuid().is_root();
    let runc = Runtime::new(RuntimeConfig::new(
        std::env::temp_dir().join("berth-probe-root"),
    ))
    .is_ok();
    let _ = std::fs::remove_dir(std::env::temp_dir().join("berth-probe-root"));
    if !(root && runc && Path::new(BUSYBOX).exists()) {
        eprintln!("skipped: needs root, runc on PATH and {BUSYBOX}");
        return false;
    }
    true
}

/// A container id unique to this process and call.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "brt-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory holding a runtime root and bundles, removed when dropped.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub runtime: Runtime,
}

impl Fixture {
    /// A runc runtime whose `--root` lives in a fresh temporary directory.
    pub fn new() -> Fixture {
        Fixture::with_config(|config| config)
    }

    /// Like [`Fixture::new`], with the configuration adjusted by `adjust`.
    pub fn with_config(adjust: impl FnOnce(RuntimeConfig) -> RuntimeConfig) -> Fixture {
        Fixture::try_with_config(adjust).unwrap()
    }

    /// Like [`Fixture::with_config`], returning the error of `Runtime::new`.
    pub fn try_with_config(
        adjust: impl FnOnce(RuntimeConfig) -> RuntimeConfig,
    ) -> berth_runtime::Result<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let config = adjust(RuntimeConfig::new(dir.path().join("runtime-root")));
        let runtime = Runtime::new(config)?;
        Ok(Fixture { dir, runtime })
    }

    /// The default spec running `args`, in its own cgroup named after `id`.
    pub fn spec(&self, id: &str, args: &[&str]) -> Spec {
        let mut spec = default_spec();
        with_args(&mut spec, args.iter().copied());
        with_cgroups_path(&mut spec, format!("/berth-runtime-test-{id}"));
        spec
    }

    /// Writes a bundle for `spec` with a busybox rootfs; returns the bundle directory.
    pub fn bundle(&self, id: &str, spec: &Spec) -> PathBuf {
        let bundle = self.dir.path().join("bundles").join(id);
        write_bundle(&bundle, spec).unwrap();
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        bundle
    }

    /// A guard that force-deletes container `id` when dropped.
    pub fn guard(&self, id: &str) -> ContainerGuard {
        ContainerGuard {
            runtime: self.runtime.clone(),
            id: id.to_string(),
        }
    }
}

/// Force-deletes its container when dropped, so a failing test leaves nothing running.
pub struct ContainerGuard {
    runtime: Runtime,
    id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = self.runtime.delete(&self.id, true);
    }
}

/// Polls the container's state until `wanted`, for at most 10 s.
pub fn wait_for_status(runtime: &Runtime, id: &str, wanted: Status) -> State {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = runtime.state(id).unwrap();
        if state.status == wanted {
            return state;
        }
        assert!(Instant::now() < deadline, "{id} stuck in {}", state.status);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipe as (read end, write end), both close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let (reader, writer) = std::io::pipe().unwrap();
    (reader.into(), writer.into())
}

/// Reads `fd` until end of file, for at most 10 s (a reader thread, so a hang fails the test).
pub fn read_to_end(fd: OwnedFd) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut text);
        let _ = sender.send(text);
    });
    receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream never reached end of file")
}
