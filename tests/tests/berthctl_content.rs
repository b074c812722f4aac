//! `berthctl content …`: listing, reading, labelling and removing blobs, and watching
//! an ingest that is still running.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::berthctl::{
    berthctl, berthctl_error, berthctl_fails, berthctl_json, berthctl_ok, table_cells, ChildGuard,
};
use berth_tests::ctr::ctr_command;
use berth_tests::steps::{content_digests, import_busybox, wait_until};
use berth_tests::{unique_id, Daemon};

#[test]
fn blobs_are_listed_read_labelled_and_removed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let expected: BTreeSet<String> = image.blobs.keys().cloned().collect();
    wait_until(
        Duration::from_secs(20),
        "only the image's blobs remain",
        || content_digests(&daemon, &ns) == expected,
    );

    // ls: every blob with its exact size; the layer carries its uncompressed digest.
    let json = berthctl_json(&daemon, &["-n", &ns, "content", "ls"]);
    let listed: BTreeSet<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected);
    for blob in json.as_array().unwrap() {
        let digest = blob["digest"].as_str().unwrap();
        assert_eq!(blob["size"], image.blobs[digest].len(), "{blob}");
    }
    let layer = &image.layer_digests[0];
    let layer_json = json
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == layer.as_str())
        .unwrap();
    assert_eq!(
        layer_json["labels"]["containerd.io/uncompressed"],
        image.diff_ids[0].as_str()
    );
    let table = berthctl_ok(&daemon, &["-n", &ns, "content", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["DIGEST", "SIZE", "AGE", "LABELS"]);
    let layer_row = table_cells(&table)
        .into_iter()
        .find(|r| &r[0] == layer)
        .unwrap();
    assert!(
        layer_row[1].ends_with(" MiB") || layer_row[1].ends_with(" KiB"),
        "{table}"
    );
    let quiet: BTreeSet<String> = berthctl_ok(&daemon, &["-n", &ns, "content", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(quiet, expected);

    // get: exact bytes, several blobs in order.
    for (digest, bytes) in &image.blobs {
        let out = berthctl(&daemon, &["-n", &ns, "content", "get", digest]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == *bytes,
            "content get {digest} returned other bytes"
        );
    }
    let out = berthctl(
        &daemon,
        &[
            "-n",
            &ns,
            "content",
            "get",
            &image.config_digest,
            &image.manifest_digest,
        ],
    );
    let mut both = image.blobs[&image.config_digest].clone();
    both.extend_from_slice(&image.blobs[&image.manifest_digest]);
    assert!(out.stdout == both);

    // label: set, then clear.
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "content",
            "label",
            &image.config_digest,
            "note=kept",
        ],
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "content", "ls", "labels.note==kept"]);
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["digest"], image.config_digest.as_str());
    berthctl_ok(
        &daemon,
        &["-n", &ns, "content", "label", &image.config_digest, "note="],
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "content", "ls", "labels.note==kept"]);
    assert!(json.as_array().unwrap().is_empty(), "{json}");

    // rm prints what it removed.
    let removed = berthctl_ok(&daemon, &["-n", &ns, "content", "rm", layer]);
    assert_eq!(removed, format!("{layer}\n"));
    assert!(!content_digests(&daemon, &ns).contains(layer));
}

#[test]
fn active_lists_an_ingest_while_it_runs() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let reference = unique_id("slow-upload");
    // ctr ingests what arrives on its stdin in 1 MiB chunks; the test writes one chunk
    // of a 4 MiB blob and keeps the pipe open, so the ingest stays active.
    let mut cmd = ctr_command(&daemon);
    cmd.args([
        "-n",
        &ns,
        "content",
        "ingest",
        "--expected-size",
        "4194304",
        &reference,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = ChildGuard::new(cmd.spawn().expect("spawning ctr content ingest"));
    let mut stdin = child.stdin().expect("stdin is piped");
    stdin.write_all(&vec![7u8; 1 << 20]).unwrap();
    stdin.flush().unwrap();

    let mut seen = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(20),
        "the ingest is listed with its bytes",
        || {
            seen = berthctl_json(&daemon, &["-n", &ns, "content", "active"]);
            seen.as_array().is_some_and(|all| {
                all.iter()
                    .any(|s| s["ref"] == reference.as_str() && s["offset"] == 1 << 20)
            })
        },
    );
    let status = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ref"] == reference.as_str())
        .unwrap();
    assert_eq!(status["total"], 4 << 20, "{status}");

    let table = berthctl_ok(&daemon, &["-n", &ns, "content", "active"]);
    let row = table_cells(&table)
        .into_iter()
        .find(|r| r[0] == reference)
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row[1], "1.0 MiB/4.0 MiB");

    // A regular expression selects by ref.
    let only = berthctl_json(&daemon, &["-n", &ns, "content", "active", "^slow-upload-"]);
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    let none = berthctl_json(&daemon, &["-n", &ns, "content", "active", "^other-"]);
    assert!(none.as_array().unwrap().is_empty(), "{none}");
    drop(stdin);
}

#[test]
fn bad_and_unknown_digests_are_one_line_errors() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let unknown = format!("sha256:{}", "0".repeat(64));

    let message = berthctl_error(&daemon, &["-n", &ns, "content", "get", "sha256:bad"]);
    assert!(
        message.starts_with("reading blob sha256:bad: "),
        "{message}"
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "content", "get", &unknown]);
    assert!(
        message.starts_with(&format!("reading blob {unknown}: ")),
        "{message}"
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "content", "rm", &unknown]);
    assert!(
        message.starts_with(&format!("removing blob {unknown}: ")),
        "{message}"
    );
    let message = berthctl_error(
        &daemon,
        &["-n", &ns, "content", "label", "not-a-digest", "a=b"],
    );
    assert!(message.contains("not-a-digest"), "{message}");
    let failure = berthctl_fails(&daemon, &["-n", &ns, "content", "active", "(unclosed"]);
    assert_eq!(failure.code, Some(2), "a bad pattern is a usage error");
    assert!(
        failure
            .message()
            .starts_with("\"(unclosed\" is not a regular expression"),
        "{}",
        failure.stderr
    );
    // Nothing was lost on the way.
    let expected: BTreeSet<String> = image.blobs.keys().cloned().collect();
    assert!(content_digests(&daemon, &ns).is_superset(&expected));
}
