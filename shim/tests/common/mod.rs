//! Fixtures of the shim's root-only integration tests: a state directory laid out as
//! berthd lays it out, a busybox image directory mounted into the bundle by the shim (an
//! overlay, as the snapshotter hands out), the real `berth-shim` binary started with
//! `berth-shim start`, a task API client on its socket, fifos as ctr makes them, and a
//! tiny events service standing in for berthd. Guards remove everything when dropped,
//! even when a test fails: only the shim started here is killed (by the pid in its
//! bundle), the container is force-deleted, mounts are undone.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::containerd::services::events::v1::events_server::{Events, EventsServer};
use berth_proto::containerd::services::events::v1::{
    Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use berth_proto::containerd::task::v2::task_client::TaskClient;
use berth_proto::containerd::task::v2::CreateTaskRequest;
use berth_proto::containerd::types::Mount;
use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::spec::{default_spec, with_args, with_cgroups_path};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The shim binary under test.
pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// Host busybox, copied into the test image.
const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the test image.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "true", "cat", "ls", "head", "tr", "dd", "printf",
];

/// Namespace every test uses.
pub const NAMESPACE: &str = "shimtest";

/// True when the tests can run containers here (root, runc and a static busybox).
pub fn can_run_containers() -> bool {
    let root = rustix::process::geteuid().is_root();
    let runc = Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
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
        "shim-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One task's world: berthd's state dir with the bundle, the image, the runtime root.
pub struct Fixture {
    /// Holds everything; removed last.
    pub dir: tempfile::TempDir,
    /// The container id.
    pub id: String,
    /// `<state>/tasks/<ns>/<id>`.
    pub bundle: PathBuf,
    /// `<state>/runc/<ns>`.
    pub runtime_root: PathBuf,
    /// `<state>/s/<id>.sock`.
    pub socket: PathBuf,
    /// Where the test's events service listens.
    pub publish_address: PathBuf,
    /// The busybox image directory (the overlay's lower layer).
    pub image: PathBuf,
}

impl Fixture {
    /// A fresh state directory for container `unique_id(tag)`, with the bundle made as
    /// berthd makes it (0700, parents 0711) holding `config.json` for `spec` and an empty
    /// `rootfs/`.
    pub fn new(tag: &str, spec: impl FnOnce(&str) -> Spec) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let id = unique_id(tag);
        let state = dir.path().join("state");
        let bundle = state.join("tasks").join(NAMESPACE).join(&id);
        for (path, mode) in [
            (state.clone(), 0o711),
            (state.join("tasks"), 0o711),
            (state.join("tasks").join(NAMESPACE), 0o711),
            (bundle.clone(), 0o700),
            (bundle.join("rootfs"), 0o755),
        ] {
            std::fs::DirBuilder::new().mode(mode).create(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&spec(&id)).unwrap(),
        )
        .unwrap();
        let image = dir.path().join("image");
        let bin = image.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for empty in ["proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(image.join(empty)).unwrap();
        }
        Fixture {
            socket: berth_shim::client::socket_path(&state, NAMESPACE, &id),
            runtime_root: state.join("runc").join(NAMESPACE),
            publish_address: dir.path().join("berthd.sock"),
            image,
            bundle,
            id,
            dir,
        }
    }

    /// The overlay mount of the image that a snapshotter would hand out.
    pub fn rootfs_mounts(&self) -> Vec<Mount> {
        let upper = self.dir.path().join("upper");
        let work = self.dir.path().join("work");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        vec![Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", self.image.display()),
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
            ],
        }]
    }

    /// A CreateTaskRequest for this task with the overlay rootfs and no stdio.
    pub fn create_request(&self) -> CreateTaskRequest {
        CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle.display().to_string(),
            rootfs: self.rootfs_mounts(),
            ..CreateTaskRequest::default()
        }
    }

    /// A fifo in the test directory, as ctr makes them.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        path
    }

    /// `berth-shim start` for this task; returns its exit status, stdout and stderr.
    pub fn run_start(&self, extra: &[&str]) -> std::process::Output {
        Command::new(SHIM)
            .arg("start")
            .args(["--namespace", NAMESPACE, "--id", &self.id])
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--publish-address")
            .arg(&self.publish_address)
            .arg("--runtime-root")
            .arg(&self.runtime_root)
            .args(["--log-level", "debug"])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Starts the shim and returns a guard that cleans up after it.
    pub fn start_shim(&self) -> ShimGuard {
        let output = self.run_start(&[]);
        let guard = ShimGuard::new(self);
        assert!(
            output.status.success(),
            "berth-shim start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(printed.trim(), self.socket.display().to_string());
        // berthd records the address once the shim is up.
        std::fs::write(self.bundle.join("address"), printed.trim()).unwrap();
        guard
    }

    /// `berth-shim delete` for this task.
    pub fn run_delete(&self) -> std::process::Output {
        Command::new(SHIM)
            .arg("delete")
            .args(["--namespace", NAMESPACE, "--id", &self.id])
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--runtime-root")
            .arg(&self.runtime_root)
            .output()
            .unwrap()
    }

    /// The shim's pid, from `bundle/shim.pid`.
    pub fn shim_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.bundle.join("shim.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The container's init pid, from `bundle/init.pid`.
    pub fn init_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.bundle.join("init.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Mount points at or below the bundle.
    pub fn mounts_in_bundle(&self) -> Vec<String> {
        mounts_under(&self.bundle)
    }

    /// True if the runtime still knows the container.
    pub fn runtime_knows_container(&self) -> bool {
        Command::new("runc")
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["state", &self.id])
            .output()
            .unwrap()
            .status
            .success()
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// The default spec running `args` in a cgroup named after `id`.
pub fn spec_running(id: &str, args: &[&str]) -> Spec {
    let mut spec = default_spec();
    with_args(&mut spec, args.iter().copied());
    with_cgroups_path(&mut spec, format!("/berth-shim-test-{id}"));
    spec
}

/// True if process `pid` exists (a zombie counts as gone).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `condition` every 20 ms for at most `limit`.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cleans up after a shim when dropped: kills it (by the pid in its bundle, if that is
/// still a berth-shim), force-deletes the container, unmounts the rootfs.
pub struct ShimGuard {
    bundle: PathBuf,
    runtime_root: PathBuf,
    id: String,
}

impl ShimGuard {
    fn new(fixture: &Fixture) -> ShimGuard {
        ShimGuard {
            bundle: fixture.bundle.clone(),
            runtime_root: fixture.runtime_root.clone(),
            id: fixture.id.clone(),
        }
    }
}

impl Drop for ShimGuard {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.bundle.join("shim.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("berth-shim") {
                // SAFETY: kill(2) on the pid of the shim this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["delete", "--force", &self.id])
            .output();
        let _ = berth_snapshot::mount::unmount_all(&self.bundle.join("rootfs"));
    }
}

/// A task API client on the shim's socket.
pub async fn connect(socket: &Path) -> TaskClient<Channel> {
    TaskClient::new(unix_channel(socket).await)
}

/// A gRPC channel over the unix socket at `socket`.
pub async fn unix_channel(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://shim.invalid")
        .connect_with_connector(connector)
        .await
        .unwrap()
}

/// Reads the fifo at `path` to end of file on a thread (opening it blocks until the shim
/// opens its end); the receiver gets the text.
pub fn read_fifo(path: &Path) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Ok(mut fifo) = std::fs::File::open(&path) {
            let _ = fifo.read_to_string(&mut text);
        }
        let _ = sender.send(text);
    });
    receiver
}

/// One event as the stand-in berthd received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `containerd-namespace` metadata.
    pub namespace: String,
    /// The topic.
    pub topic: String,
    /// The event's type URL.
    pub type_url: String,
    /// The event's bytes.
    pub value: Vec<u8>,
}

/// A stand-in for berthd's events service that records what is published.
#[derive(Debug, Clone, Default)]
pub struct RecordingEvents {
    /// Everything published so far, in arrival order.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU32>,
}

impl RecordingEvents {
    /// The topics received so far.
    pub fn topics(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|event| event.topic.clone())
            .collect()
    }
}

#[tonic::async_trait]
impl Events for RecordingEvents {
    async fn publish(
        &self,
        request: tonic::Request<PublishRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        let namespace = request
            .metadata()
            .get("containerd-namespace")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let request = request.into_inner();
        let event = request.event.unwrap_or_default();
        self.received.lock().unwrap().push(Received {
            namespace,
            topic: request.topic,
            type_url: event.type_url,
            value: event.value,
        });
        Ok(tonic::Response::new(()))
    }

    async fn forward(
        &self,
        _request: tonic::Request<ForwardRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    type SubscribeStream = tokio_stream::Empty<Result<Envelope, tonic::Status>>;

    async fn subscribe(
        &self,
        _request: tonic::Request<SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

/// Serves a [`RecordingEvents`] on `socket` until the returned handle is aborted.
pub fn serve_events(socket: &Path) -> (RecordingEvents, tokio::task::JoinHandle<()>) {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let events = RecordingEvents::default();
    let service = EventsServer::new(events.clone());
    let connections = events.connections.clone();
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::UnixListenerStream::new(listener),
        move |accepted| {
            connections.fetch_add(1, Ordering::SeqCst);
            accepted
        },
    );
    let handle = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (events, handle)
}

/// Waits (asynchronously) until `events` holds at least `count` events, for at most 20 s.
pub async fn wait_for_events(events: &RecordingEvents, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let topics = events.topics();
        if topics.len() >= count || tokio::time::Instant::now() >= deadline {
            return topics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
