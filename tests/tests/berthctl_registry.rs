//! `berthctl images pull|push` against a real registry (Debian's `docker-registry` on
//! 127.0.0.1, one per test, images put there with skopeo or with berthctl's own push):
//! platform selection from a multi-platform index, basic and bearer auth, a push that
//! pulls back with the same digest, and images moved between berthctl and Debian's
//! `ctr` through archives, each run on a fresh daemon.

mod berthctl_registry_support;

use std::collections::BTreeSet;

use berth_tests::berthctl_tasks::{container_ids, run_ok};
use berth_tests::fixtures::multiarch::{platform_file_contents, PLATFORM_FILE};
use berth_tests::fixtures::multiarch_oci_archive;
use berth_tests::registry::LocalRegistry;
use berth_tests::steps::{content_digests, image_names, import_busybox, scratch_dir, BUSYBOX_NAME};
use berth_tests::tasks::TaskCleanup;
use berth_tests::token_proxy::TokenProxy;
use berth_tests::{ctr_ok, unique_id, Daemon};
use berthctl_registry_support::{
    assert_nothing_half_written, assert_unpacked_once, berthctl_in_error, berthctl_in_json,
    berthctl_in_ok, busybox_in_registry, fresh_namespace, image_digest,
};

/// A registry holding the two-platform image under `multi:v1`, and what it holds.
fn registry_with_multiarch(
    daemon: &Daemon,
) -> (LocalRegistry, berth_tests::fixtures::MultiarchImage) {
    let registry = LocalRegistry::start();
    let archive = daemon.dir().join("multiarch.tar");
    let image = multiarch_oci_archive(&archive, "localhost/multi:v1").expect("building the image");
    registry.push_oci_archive(&archive, "multi:v1", true);
    (registry, image)
}

#[test]
fn a_multi_platform_pull_unpacks_the_hosts_image_and_runs_it() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let (registry, image) = registry_with_multiarch(&daemon);
    let ns = fresh_namespace(&daemon);
    let reference = registry.reference("multi:v1");

    let printed = berthctl_in_ok(&daemon, &ns, &["images", "pull", &reference]);
    assert!(
        printed.contains(&format!("pulled {reference} ({})", image.index_digest)),
        "{printed}"
    );

    // The record names the index; only the host's manifest and its blobs came along.
    assert_eq!(image_names(&daemon, &ns), vec![reference.clone()]);
    assert_eq!(image_digest(&daemon, &ns, &reference), image.index_digest);
    let amd64 = image.image("linux/amd64");
    let arm64 = image.image("linux/arm64");
    let content = content_digests(&daemon, &ns);
    let mut expected: BTreeSet<String> = amd64.blobs.keys().cloned().collect();
    expected.insert(image.index_digest.clone());
    assert_eq!(
        content, expected,
        "the index and the amd64 image, nothing of arm64"
    );
    assert!(!content.contains(&arm64.manifest_digest));
    assert_unpacked_once(&daemon, &ns, &amd64.chain_ids());

    let check = berthctl_in_json(&daemon, &ns, &["images", "check"]);
    assert_eq!(check[0]["complete"], true, "{check}");
    assert_eq!(check[0]["unpacked"], true, "{check}");

    cleanup.track(&ns, "hi");
    let out = run_ok(
        &daemon,
        &ns,
        &["--rm", &reference, "hi", "cat", "/platform"],
    );
    assert_eq!(out, platform_file_contents("linux/amd64"));
    let out = run_ok(&daemon, &ns, &["--rm", &reference, "hi", "echo", "hi"]);
    assert_eq!(out, "hi\n");
}

#[test]
fn platform_flag_pulls_and_unpacks_the_arm64_manifest() {
    let daemon = Daemon::start();
    let (registry, image) = registry_with_multiarch(&daemon);
    let ns = fresh_namespace(&daemon);
    let reference = registry.reference("multi:v1");

    berthctl_in_ok(
        &daemon,
        &ns,
        &["images", "pull", "--platform", "linux/arm64", &reference],
    );
    let arm64 = image.image("linux/arm64");
    let mut expected: BTreeSet<String> = arm64.blobs.keys().cloned().collect();
    expected.insert(image.index_digest.clone());
    assert_eq!(content_digests(&daemon, &ns), expected);
    assert_unpacked_once(&daemon, &ns, &arm64.chain_ids());

    // Its filesystem is the arm64 one.
    let target = scratch_dir(&daemon, "arm64-root");
    let target_arg = target.to_str().expect("temp dirs are UTF-8");
    berthctl_in_ok(
        &daemon,
        &ns,
        &[
            "images",
            "mount",
            "--platform",
            "linux/arm64",
            &reference,
            target_arg,
        ],
    );
    let platform = std::fs::read_to_string(target.join(PLATFORM_FILE));
    berthctl_in_ok(&daemon, &ns, &["images", "unmount", "--rm", target_arg]);
    assert_eq!(
        platform.expect("reading /platform"),
        platform_file_contents("linux/arm64")
    );

    // The host's image is not there to run: a clear error, not a half-made container.
    let message = berthctl_in_error(&daemon, &ns, &["run", "--rm", &reference, "x", "true"]);
    assert!(message.contains("not found"), "{message}");
    assert_eq!(container_ids(&daemon, &ns), Vec::<String>::new());
}

#[test]
fn all_platforms_pulls_every_manifest_and_unpacks_the_hosts() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let (registry, image) = registry_with_multiarch(&daemon);
    let ns = fresh_namespace(&daemon);
    let reference = registry.reference("multi:v1");

    berthctl_in_ok(
        &daemon,
        &ns,
        &["images", "pull", "--all-platforms", &reference],
    );
    let every_blob: BTreeSet<String> = image.blobs.keys().cloned().collect();
    assert_eq!(content_digests(&daemon, &ns), every_blob);
    assert_unpacked_once(&daemon, &ns, &image.image("linux/amd64").chain_ids());
    let listed = berthctl_in_json(&daemon, &ns, &["images", "ls"]);
    let platforms: BTreeSet<String> = listed[0]["platforms"]
        .as_array()
        .expect("a platform list")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()])
    );

    // The arm64 image unpacks from the store alone.
    let target = scratch_dir(&daemon, "arm64-root");
    let target_arg = target.to_str().expect("temp dirs are UTF-8");
    berthctl_in_ok(
        &daemon,
        &ns,
        &[
            "images",
            "mount",
            "--platform",
            "linux/arm64",
            &reference,
            target_arg,
        ],
    );
    let platform = std::fs::read_to_string(target.join(PLATFORM_FILE));
    berthctl_in_ok(&daemon, &ns, &["images", "unmount", "--rm", target_arg]);
    assert_eq!(
        platform.expect("reading /platform"),
        platform_file_contents("linux/arm64")
    );

    cleanup.track(&ns, "all");
    let out = run_ok(
        &daemon,
        &ns,
        &["--rm", &reference, "all", "cat", "/platform"],
    );
    assert_eq!(out, platform_file_contents("linux/amd64"));
}

#[test]
fn basic_auth_pulls_with_the_right_credentials_only() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let registry = LocalRegistry::start_with_basic_auth("alice", "wonderland");
    let image = busybox_in_registry(&registry, daemon.dir(), "busybox:v1");
    let reference = registry.reference("busybox:v1");
    let ns = fresh_namespace(&daemon);

    for wrong in [
        vec![],
        vec!["--user", "alice:not-the-password"],
        vec!["--user", "mallory:wonderland"],
    ] {
        let mut args = vec!["images", "pull"];
        args.extend(&wrong);
        args.push(&reference);
        let message = berthctl_in_error(&daemon, &ns, &args);
        assert!(
            message.contains(registry.addr()) && message.contains("credentials"),
            "{wrong:?}: {message}"
        );
        assert_nothing_half_written(&daemon, &ns, |_| false);
    }

    berthctl_in_ok(
        &daemon,
        &ns,
        &["images", "pull", "--user", "alice:wonderland", &reference],
    );
    assert_eq!(
        image_digest(&daemon, &ns, &reference),
        image.manifest_digest
    );
    cleanup.track(&ns, "authed");
    let out = run_ok(&daemon, &ns, &["--rm", &reference, "authed", "echo", "hi"]);
    assert_eq!(out, "hi\n");

    // The same credentials from a Docker config file.
    let other = fresh_namespace(&daemon);
    let config = daemon.dir().join("auth.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#,
            registry.addr()
        ),
    )
    .expect("writing the Docker config");
    let config_arg = config.to_str().expect("temp dirs are UTF-8");
    berthctl_in_ok(
        &daemon,
        &other,
        &["images", "pull", "--docker-config", config_arg, &reference],
    );
    assert_eq!(
        image_digest(&daemon, &other, &reference),
        image.manifest_digest
    );
}

#[test]
fn bearer_tokens_are_fetched_with_the_credentials_given() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let registry = LocalRegistry::start();
    let image = busybox_in_registry(&registry, daemon.dir(), "busybox:v1");
    let proxy = TokenProxy::start(registry.addr(), "bob", "builder");
    let reference = proxy.reference("busybox:v1");
    let ns = fresh_namespace(&daemon);

    for wrong in [vec![], vec!["--user", "bob:wrong"]] {
        let mut args = vec!["images", "pull"];
        args.extend(&wrong);
        args.push(&reference);
        let message = berthctl_in_error(&daemon, &ns, &args);
        assert!(
            message.contains(proxy.addr()) && message.contains("credentials"),
            "{wrong:?}: {message}"
        );
        assert_nothing_half_written(&daemon, &ns, |_| false);
    }
    assert_eq!(proxy.tokens_issued(), 0, "{:?}", proxy.requests());

    berthctl_in_ok(
        &daemon,
        &ns,
        &["images", "pull", "-u", "bob:builder", &reference],
    );
    assert!(proxy.tokens_issued() >= 1, "{:?}", proxy.requests());
    assert_eq!(
        image_digest(&daemon, &ns, &reference),
        image.manifest_digest
    );
    cleanup.track(&ns, "bearer");
    let out = run_ok(&daemon, &ns, &["--rm", &reference, "bearer", "echo", "hi"]);
    assert_eq!(out, "hi\n");
}

#[test]
fn a_pushed_image_pulls_back_into_a_fresh_namespace_with_the_same_digest() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let registry = LocalRegistry::start();
    let source = fresh_namespace(&daemon);
    let image = berth_tests::berthctl::berthctl_import_busybox(&daemon, &source);
    let remote = registry.reference("pushed/busybox:v2");

    let pushed = berthctl_in_json(&daemon, &source, &["images", "push", &remote, BUSYBOX_NAME]);
    assert_eq!(pushed["digest"], image.manifest_digest.as_str(), "{pushed}");
    let uploaded: BTreeSet<String> = pushed["uploaded"]
        .as_array()
        .expect("a list of uploaded blobs")
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect();
    let mut blobs: BTreeSet<String> = image.layer_digests.iter().cloned().collect();
    blobs.insert(image.config_digest.clone());
    assert!(uploaded.is_superset(&blobs), "uploaded {uploaded:?}");

    // Pushed again: the registry has every blob, nothing is uploaded.
    let again = berthctl_in_json(&daemon, &source, &["images", "push", &remote, BUSYBOX_NAME]);
    assert_eq!(again["digest"], image.manifest_digest.as_str());
    assert_eq!(again["uploaded"], serde_json::json!([]), "{again}");

    let target = fresh_namespace(&daemon);
    berthctl_in_ok(&daemon, &target, &["images", "pull", &remote]);
    assert_eq!(
        image_digest(&daemon, &target, &remote),
        image.manifest_digest
    );
    assert_eq!(
        content_digests(&daemon, &target),
        image.blobs.keys().cloned().collect::<BTreeSet<_>>()
    );
    cleanup.track(&target, "round-trip");
    let out = run_ok(
        &daemon,
        &target,
        &["--rm", &remote, "round-trip", "echo", "back"],
    );
    assert_eq!(out, "back\n");
}

#[test]
fn a_pulled_image_exported_by_berthctl_runs_under_ctr_on_a_fresh_daemon() {
    let source = Daemon::start();
    let (registry, image) = registry_with_multiarch(&source);
    let ns = fresh_namespace(&source);
    let reference = registry.reference("multi:v1");
    berthctl_in_ok(&source, &ns, &["images", "pull", &reference]);
    let archive = source.dir().join("exported.tar");
    let archive_arg = archive.to_str().expect("temp dirs are UTF-8");
    berthctl_in_ok(&source, &ns, &["images", "export", archive_arg, &reference]);
    drop(registry);

    let target = Daemon::start();
    let mut cleanup = TaskCleanup::new(&target);
    let ctr_ns = unique_id("ctr");
    ctr_ok(&target, &["-n", &ctr_ns, "images", "import", archive_arg]);
    assert_eq!(image_names(&target, &ctr_ns), vec![reference.clone()]);
    let listed = ctr_ok(&target, &["-n", &ctr_ns, "images", "ls"]);
    assert!(listed.contains(&image.index_digest), "{listed}");
    cleanup.track(&ctr_ns, "from-berthctl");
    let out = ctr_ok(
        &target,
        &[
            "-n",
            &ctr_ns,
            "run",
            "--rm",
            &reference,
            "from-berthctl",
            "cat",
            "/platform",
        ],
    );
    assert_eq!(out, platform_file_contents("linux/amd64"));
}

#[test]
fn an_image_exported_by_ctr_runs_under_berthctl_on_a_fresh_daemon() {
    let source = Daemon::start();
    let ctr_ns = unique_id("ctr");
    let image = import_busybox(&source, &ctr_ns);
    let archive = source.dir().join("from-ctr.tar");
    let archive_arg = archive.to_str().expect("temp dirs are UTF-8");
    ctr_ok(
        &source,
        &["-n", &ctr_ns, "images", "export", archive_arg, BUSYBOX_NAME],
    );

    let target = Daemon::start();
    let mut cleanup = TaskCleanup::new(&target);
    let ns = fresh_namespace(&target);
    berthctl_in_ok(&target, &ns, &["images", "import", archive_arg]);
    assert_eq!(
        image_digest(&target, &ns, BUSYBOX_NAME),
        image.manifest_digest
    );
    assert_unpacked_once(&target, &ns, &image.chain_ids());
    cleanup.track(&ns, "from-ctr");
    let out = run_ok(
        &target,
        &ns,
        &["--rm", BUSYBOX_NAME, "from-ctr", "echo", "hello"],
    );
    assert_eq!(out, "hello\n");
}
