//! What the berthctl registry tests share: berthctl runs that see no credentials but
//! the ones a test gives, readers of what the daemon holds, and checks that nothing
//! half-written is visible after a failed pull.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_tests::berthctl::{berthctl_command, ChildGuard, Failure, BERTHCTL_TIMEOUT};
use berth_tests::ctr::run_with_timeout;
use berth_tests::fixtures::oci::sha256_digest;
use berth_tests::fixtures::{busybox_oci_archive, BuiltImage};
use berth_tests::registry::LocalRegistry;
use berth_tests::steps::{content_digests, image_names, snapshots_ls};
use berth_tests::Daemon;

/// A `berthctl -n <namespace> <args>` command whose Docker config directory is an
/// empty one of the test's, so credentials come only from the test's flags.
pub fn registry_command(daemon: &Daemon, namespace: &str, args: &[&str]) -> Command {
    let docker_config = daemon.dir().join("docker-config");
    std::fs::create_dir_all(&docker_config).expect("creating an empty Docker config dir");
    let mut cmd = berthctl_command(daemon);
    cmd.env("DOCKER_CONFIG", docker_config)
        .args(["-n", namespace])
        .args(args);
    cmd
}

/// Runs [`registry_command`] and returns its output, whatever its status.
pub fn berthctl_in(daemon: &Daemon, namespace: &str, args: &[&str]) -> Output {
    run_with_timeout(registry_command(daemon, namespace, args), BERTHCTL_TIMEOUT).unwrap_or_else(
        |partial| {
            panic!(
                "berthctl {args:?} ran longer than {BERTHCTL_TIMEOUT:?}\nstderr: {}",
                String::from_utf8_lossy(&partial.stderr)
            )
        },
    )
}

/// [`berthctl_in`], which must succeed; returns stdout.
pub fn berthctl_in_ok(daemon: &Daemon, namespace: &str, args: &[&str]) -> String {
    let out = berthctl_in(daemon, namespace, args);
    assert!(
        out.status.success(),
        "berthctl -n {namespace} {args:?} failed ({})\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.log_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`berthctl_in`] with `--format json`, which must succeed and print one JSON value.
pub fn berthctl_in_json(daemon: &Daemon, namespace: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    let stdout = berthctl_in_ok(daemon, namespace, &full);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("berthctl {full:?} printed invalid JSON ({e}):\n{stdout}"))
}

/// [`berthctl_in`], which must fail the usual way: exit code 1, nothing on stdout and
/// one line on stderr; returns that line without the `berthctl: ` prefix.
pub fn berthctl_in_error(daemon: &Daemon, namespace: &str, args: &[&str]) -> String {
    let out = berthctl_in(daemon, namespace, args);
    let failure = Failure {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    assert_eq!(
        failure.code,
        Some(1),
        "berthctl {args:?} should exit with 1\nstdout: {}\nstderr: {}",
        failure.stdout,
        failure.stderr
    );
    failure.message()
}

/// Starts [`registry_command`] in the background (output discarded), guarded so that
/// it is killed if the test fails first.
pub fn spawn_berthctl(daemon: &Daemon, namespace: &str, args: &[&str]) -> ChildGuard {
    let mut cmd = registry_command(daemon, namespace, args);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    ChildGuard::new(cmd.spawn().expect("starting berthctl"))
}

/// Creates a fresh namespace on the daemon and returns its name.
pub fn fresh_namespace(daemon: &Daemon) -> String {
    let namespace = berth_tests::unique_id("ns");
    berthctl_in_ok(daemon, &namespace, &["namespaces", "create", &namespace]);
    namespace
}

/// Builds the busybox image in `dir` and copies it to `repo_tag` in `registry`.
pub fn busybox_in_registry(registry: &LocalRegistry, dir: &Path, repo_tag: &str) -> BuiltImage {
    let archive = dir.join(format!("busybox-{}.tar", repo_tag.replace([':', '/'], "-")));
    let image =
        busybox_oci_archive(&archive, "localhost/busybox:latest").expect("building busybox");
    registry.push_oci_archive(&archive, repo_tag, false);
    image
}

/// The digest the image record `name` points at (`berthctl images ls`).
pub fn image_digest(daemon: &Daemon, namespace: &str, name: &str) -> String {
    let listed = berthctl_in_json(daemon, namespace, &["images", "ls"]);
    listed
        .as_array()
        .expect("images ls prints an array")
        .iter()
        .find(|image| image["name"] == name)
        .unwrap_or_else(|| panic!("image {name} is not listed: {listed}"))["digest"]
        .as_str()
        .expect("a digest string")
        .to_string()
}

/// One ingest in progress, as `berthctl content active` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveIngest {
    /// The ingest's ref (`layer-sha256:…`).
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
}

/// The ingests in progress in `namespace`.
pub fn active_ingests(daemon: &Daemon, namespace: &str) -> Vec<ActiveIngest> {
    let listed = berthctl_in_json(daemon, namespace, &["content", "active"]);
    listed
        .as_array()
        .expect("content active prints an array")
        .iter()
        .map(|status| ActiveIngest {
            reference: status["ref"].as_str().unwrap_or_default().to_string(),
            offset: status["offset"].as_u64().unwrap_or(0),
        })
        .collect()
}

/// The committed snapshots (`ctr snapshots ls`) and the keys of all others.
pub fn committed_and_other_snapshots(
    daemon: &Daemon,
    namespace: &str,
) -> (BTreeSet<String>, Vec<String>) {
    let mut committed = BTreeSet::new();
    let mut others = Vec::new();
    for row in snapshots_ls(daemon, namespace) {
        if row.kind == "Committed" {
            committed.insert(row.key);
        } else {
            others.push(format!("{} ({})", row.key, row.kind));
        }
    }
    (committed, others)
}

/// Asserts that the image's layers are unpacked exactly once each: the committed
/// snapshots are its chain IDs, nothing else (no extraction snapshot) is left, and
/// there are no more snapshot directories on disk than layers.
pub fn assert_unpacked_once(daemon: &Daemon, namespace: &str, chain_ids: &[String]) {
    let (committed, others) = committed_and_other_snapshots(daemon, namespace);
    let expected: BTreeSet<String> = chain_ids.iter().cloned().collect();
    assert_eq!(committed, expected, "committed snapshots");
    assert!(
        others.is_empty(),
        "snapshots left besides the layers: {others:?}"
    );
    let on_disk = daemon.snapshot_dirs_on_disk();
    assert_eq!(
        on_disk.len(),
        chain_ids.len(),
        "snapshot directories on disk: {on_disk:?}"
    );
}

/// Asserts that a failed pull left nothing visible: no image record, no blob listed
/// in the namespace, every blob file on disk holding what its name says, and no
/// ingest but those `resumable` allows (by ref).
pub fn assert_nothing_half_written(
    daemon: &Daemon,
    namespace: &str,
    resumable: impl Fn(&ActiveIngest) -> bool,
) {
    assert_eq!(
        image_names(daemon, namespace),
        Vec::<String>::new(),
        "image records"
    );
    assert_eq!(
        content_digests(daemon, namespace),
        BTreeSet::new(),
        "blobs listed after a failed pull"
    );
    assert_blob_files_match_their_names(daemon);
    let ingests = active_ingests(daemon, namespace);
    let unexpected: Vec<&ActiveIngest> = ingests.iter().filter(|i| !resumable(i)).collect();
    assert!(unexpected.is_empty(), "ingests left: {unexpected:?}");
}

/// Asserts that every blob file in the daemon's store hashes to its file name.
pub fn assert_blob_files_match_their_names(daemon: &Daemon) {
    for digest in daemon.blobs_on_disk() {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
        let bytes = std::fs::read(daemon.blobs_dir().join(hex)).expect("reading a blob file");
        assert_eq!(
            sha256_digest(&bytes),
            digest,
            "a blob file holds other bytes"
        );
    }
}

/// The paths of blob GETs (`/v2/<repo>/blobs/<digest>`) the proxy answered, with the
/// `Range` asked for, from request number `from` on.
pub fn blob_gets(
    requests: &[berth_tests::token_proxy::ProxiedRequest],
    from: usize,
    digest: &str,
) -> Vec<Option<String>> {
    let suffix = format!("/blobs/{digest}");
    requests[from.min(requests.len())..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&suffix))
        .map(|r| r.range.clone())
        .collect()
}
