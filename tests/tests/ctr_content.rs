//! `ctr content ingest/ls/get` and the commit checks on expected digest and size.

use berth_tests::fixtures::large::pseudo_random_bytes;
use berth_tests::fixtures::oci::sha256_digest;
use berth_tests::steps::content_digests;
use berth_tests::{ctr, ctr_ok, unique_id, Daemon};
use std::io::Write;
use std::process::Stdio;

/// `ctr content ingest` with `bytes` on stdin and the given expectations.
fn ingest(
    daemon: &Daemon,
    ns: &str,
    reference: &str,
    bytes: &[u8],
    size: usize,
    digest: &str,
) -> std::process::Output {
    let mut cmd = berth_tests::ctr::ctr_command(daemon);
    cmd.args([
        "-n",
        ns,
        "content",
        "ingest",
        "--expected-size",
        &size.to_string(),
    ])
    .args(["--expected-digest", digest, reference])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning ctr content ingest");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_blob_is_ingested_listed_and_read_back() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let bytes = pseudo_random_bytes(7, 3 * 1024 * 1024 + 17);
    let digest = sha256_digest(&bytes);
    let out = ingest(&daemon, &ns, "blob-ref", &bytes, bytes.len(), &digest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(content_digests(&daemon, &ns).contains(&digest));
    assert!(daemon.blobs_on_disk().contains(&digest));
    let read = ctr(&daemon, &["-n", &ns, "content", "get", &digest]);
    assert!(read.stdout == bytes, "content get returned other bytes");

    // Stored once on disk, but visible only in the namespace that wrote it.
    let other = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &other]);
    assert!(!content_digests(&daemon, &other).contains(&digest));
    assert!(!ctr(&daemon, &["-n", &other, "content", "get", &digest])
        .status
        .success());
}

#[test]
fn a_wrong_digest_or_size_at_commit_is_rejected_and_nothing_is_committed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let bytes = pseudo_random_bytes(8, 100_000);
    let digest = sha256_digest(&bytes);
    let wrong_digest = sha256_digest(b"something else");

    let out = ingest(
        &daemon,
        &ns,
        "wrong-digest",
        &bytes,
        bytes.len(),
        &wrong_digest,
    );
    assert!(!out.status.success(), "a wrong digest was accepted");
    let out = ingest(&daemon, &ns, "wrong-size", &bytes, bytes.len() - 1, &digest);
    assert!(!out.status.success(), "a wrong size was accepted");
    let out = ingest(&daemon, &ns, "too-big", &bytes, bytes.len() + 1, &digest);
    assert!(!out.status.success(), "a short write was accepted");

    let listed = content_digests(&daemon, &ns);
    assert!(
        !listed.contains(&digest) && !listed.contains(&wrong_digest),
        "{listed:?}"
    );
    let on_disk = daemon.blobs_on_disk();
    assert!(
        !on_disk.contains(&digest) && !on_disk.contains(&wrong_digest),
        "{on_disk:?}"
    );

    // The right expectations still work afterwards.
    let out = ingest(&daemon, &ns, "right", &bytes, bytes.len(), &digest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(content_digests(&daemon, &ns).contains(&digest));
}
