//! A local image registry per test: Debian's `docker-registry` (the distribution
//! project's registry) bound to 127.0.0.1 on a free port, with its own storage, and
//! optionally requiring basic auth. Images are put there with `skopeo`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary (Debian package `docker-registry`).
pub const DOCKER_REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The image copy tool (Debian package `skopeo`).
pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";
/// How long the registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when the chosen one is taken before the registry binds it.
const START_ATTEMPTS: usize = 5;

/// Panics with the fix when `binary` (from Debian `package`) is not installed.
pub fn require_tool(binary: &str, package: &str) {
    if !Path::new(binary).exists() {
        panic!(
            "{binary} is missing (Debian package {package}): run scripts/install-deps.sh \
             to install what the tests need"
        );
    }
}

/// A running `docker-registry` with a fresh storage directory; killed (only its own
/// process) and its directory removed on drop.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Option<Child>,
    addr: String,
    credentials: Option<(String, String)>,
    tls: bool,
    dir: tempfile::TempDir,
}

impl LocalRegistry {
    /// Starts a registry that anyone may pull from and push to.
    pub fn start() -> Self {
        Self::start_inner(None, false)
    }

    /// Starts a registry that requires basic auth as `username` / `password`.
    pub fn start_with_basic_auth(username: &str, password: &str) -> Self {
        Self::start_inner(Some((username.to_string(), password.to_string())), false)
    }

    /// Starts a registry that speaks HTTPS only, with a self-signed certificate for
    /// 127.0.0.1 (made with `openssl`).
    pub fn start_with_tls() -> Self {
        Self::start_inner(None, true)
    }

    fn start_inner(credentials: Option<(String, String)>, tls: bool) -> Self {
        require_tool(DOCKER_REGISTRY_BIN, "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("breg")
            .tempdir_in("/tmp")
            .expect("creating the registry's temp dir");
        std::fs::create_dir(dir.path().join("storage")).expect("creating the storage dir");
        if tls {
            write_self_signed_certificate(dir.path());
        }
        if let Some((username, password)) = &credentials {
            // The lowest bcrypt cost keeps each check fast; this is a test registry.
            let hash = bcrypt::hash(password, 4).expect("hashing the test password");
            std::fs::write(dir.path().join("htpasswd"), format!("{username}:{hash}\n"))
                .expect("writing htpasswd");
        }
        let mut registry = LocalRegistry {
            child: None,
            addr: String::new(),
            credentials,
            tls,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            registry.addr = format!("127.0.0.1:{port}");
            if registry.spawn_and_wait() {
                return registry;
            }
            eprintln!(
                "docker-registry did not start on {} (attempt {attempt}); log tail:\n{}",
                registry.addr,
                registry.log_tail(10)
            );
        }
        panic!(
            "docker-registry did not start after {START_ATTEMPTS} attempts; log tail:\n{}",
            registry.log_tail(40)
        );
    }

    /// `127.0.0.1:PORT`, the registry's address (and the host part of its references).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The basic-auth user and password the registry requires, if it requires any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `ADDR/repo_tag`: the full reference of `repo_tag` (`app:v1`) in this registry.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The registry's temp directory (storage, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file the registry logs to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The last `lines` lines of the registry's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Copies the image in the OCI archive `archive` to `repo_tag` (`app:v1`) in this
    /// registry with skopeo, keeping its digests; `all_platforms` copies every
    /// platform of an index (else only the host's). Panics with skopeo's output if
    /// the copy fails.
    pub fn push_oci_archive(&self, archive: &Path, repo_tag: &str, all_platforms: bool) {
        require_tool(SKOPEO_BIN, "skopeo");
        let scratch = self.dir.path().join("skopeo-tmp");
        std::fs::create_dir_all(&scratch).expect("creating skopeo's temp dir");
        let mut cmd = Command::new(SKOPEO_BIN);
        cmd.arg("--insecure-policy")
            .arg("copy")
            .arg("--quiet")
            .arg("--preserve-digests")
            .arg("--dest-tls-verify=false");
        if all_platforms {
            cmd.arg("--all");
        }
        match self.credentials() {
            Some((user, password)) => cmd.arg(format!("--dest-creds={user}:{password}")),
            None => cmd.arg("--dest-no-creds"),
        };
        cmd.arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}", self.reference(repo_tag)))
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null());
        let output = cmd.output().expect("running skopeo");
        if !output.status.success() {
            panic!(
                "{cmd:?} failed with {}:\n{}{}\nregistry log tail:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_tail(20)
            );
        }
    }

    /// Writes the config, starts the registry on [`Self::addr`] and waits until it
    /// answers; `false` if it exited first (the port was taken, say).
    fn spawn_and_wait(&mut self) -> bool {
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, self.config_yaml()).expect("writing config.yml");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the registry log");
        let mut cmd = Command::new(DOCKER_REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log fd"))
            .stderr(log);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Should the test process die without running its drops, the registry
                // goes with it instead of lingering.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {DOCKER_REGISTRY_BIN}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if registry_answers(&self.addr, self.tls) {
                return true;
            }
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(_status)) = child.try_wait() {
                self.child = None;
                return false;
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "docker-registry did not answer on {} within {START_TIMEOUT:?}; log tail:\n{}",
                    self.addr,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The registry's `config.yml`.
    fn config_yaml(&self) -> String {
        let dir = self.dir.path().display();
        let auth = match &self.credentials {
            Some(_) => format!(
                "auth:\n  htpasswd:\n    realm: berth-test-registry\n    path: {dir}/htpasswd\n"
            ),
            None => String::new(),
        };
        let tls = if self.tls {
            format!("  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n")
        } else {
            String::new()
        };
        format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {dir}/storage\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: berth-test-{pid}\n{tls}\
             {auth}",
            addr = self.addr,
            pid = std::process::id(),
        )
    }

    /// Kills the registry (only its own process) and reaps it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// Writes `key.pem` and `cert.pem` (self-signed, for IP 127.0.0.1) into `dir`.
fn write_self_signed_certificate(dir: &Path) {
    require_tool("/usr/bin/openssl", "openssl");
    let output = Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether a registry at `addr` answers `GET /v2/` (200, or 401 when it requires
/// credentials). A TLS registry is spoken to in plain HTTP all the same: the
/// `400` it answers with shows it is up.
fn registry_answers(addr: &str, tls: bool) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    status == "200" || status == "401" || (tls && status == "400")
}
