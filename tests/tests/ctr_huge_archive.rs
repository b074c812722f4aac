//! Import archives with a huge index.json or manifest (containerd's CVE-2023-25153):
//! a clean failure, and the daemon's memory stays bounded.

use berth_tests::fixtures::hostile::{huge_index_archive, huge_manifest_archive};
use berth_tests::{ctr, ctr_ok, unique_id, Daemon};

/// Size of the oversized JSON documents.
const HUGE: usize = 64 << 20;
/// The most memory the daemon may have used at its peak, in KiB.
const PEAK_RSS_LIMIT_KIB: u64 = 256 * 1024;

/// The daemon's peak resident set size (`VmHWM`) in KiB.
fn peak_rss_kib(daemon: &Daemon) -> u64 {
    let pid = daemon.pid().expect("the daemon runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[test]
fn a_huge_index_json_fails_cleanly() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("huge-index.tar");
    huge_index_archive(&archive, HUGE).unwrap();
    let out = ctr(
        &daemon,
        &["-n", &ns, "images", "import", archive.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
    assert!(
        peak_rss_kib(&daemon) < PEAK_RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        peak_rss_kib(&daemon)
    );
    ctr_ok(&daemon, &["version"]);
    assert!(ctr_ok(&daemon, &["-n", &ns, "images", "ls", "-q"])
        .trim()
        .is_empty());
}

#[test]
fn a_huge_manifest_fails_cleanly() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("huge-manifest.tar");
    huge_manifest_archive(&archive, "localhost/huge:1", HUGE).unwrap();
    let out = ctr(
        &daemon,
        &["-n", &ns, "images", "import", archive.to_str().unwrap()],
    );
    assert!(
        !out.status.success(),
        "an image with a huge manifest and no config imported"
    );
    assert!(!out.stderr.is_empty());
    assert!(
        peak_rss_kib(&daemon) < PEAK_RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        peak_rss_kib(&daemon)
    );
    ctr_ok(&daemon, &["version"]);
}
