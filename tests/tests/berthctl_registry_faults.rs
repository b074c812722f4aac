//! `berthctl images pull` when things go wrong: a pull killed mid-layer and run again
//! (only what is missing is fetched), two pulls of one image at once (each layer
//! applied once), and bad input — an unknown image, an unreachable registry, a layer or
//! manifest that does not match its digest, a transfer that stalls — each a clear
//! one-line error with nothing half-written left visible.

mod berthctl_registry_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_tests::fixtures::large::large_archive;
use berth_tests::fixtures::{multiarch_oci_archive, BuiltImage};
use berth_tests::registry::{free_port, LocalRegistry};
use berth_tests::steps::{content_digests, image_names, wait_until};
use berth_tests::token_proxy::TokenProxy;
use berth_tests::Daemon;
use berthctl_registry_support::{
    active_ingests, assert_blob_files_match_their_names, assert_nothing_half_written,
    assert_unpacked_once, berthctl_in_error, berthctl_in_json, berthctl_in_ok, blob_gets,
    busybox_in_registry, fresh_namespace, image_digest, spawn_berthctl, ActiveIngest,
};

/// A registry holding a large image of `layers` incompressible layers of `layer_size`
/// bytes under `large:v1`, and what the image holds.
fn registry_with_large_image(
    daemon: &Daemon,
    layers: usize,
    layer_size: usize,
) -> (LocalRegistry, BuiltImage) {
    let registry = LocalRegistry::start();
    let archive = daemon.dir().join("large.tar");
    let image = large_archive(&archive, "localhost/large:v1", layers, layer_size)
        .expect("building the large image");
    registry.push_oci_archive(&archive, "large:v1", false);
    let _ = std::fs::remove_file(&archive);
    (registry, image)
}

/// The ingest ref berthctl (like ctr) uses for a layer.
fn layer_ref(digest: &str) -> String {
    format!("layer-{digest}")
}

/// The offset of the ingest `reference` once it has stopped moving (unchanged over
/// half a second), waiting up to a minute for it to appear and settle above zero.
fn settled_offset(daemon: &Daemon, namespace: &str, reference: &str) -> u64 {
    let find = || {
        active_ingests(daemon, namespace)
            .into_iter()
            .find(|i| i.reference == reference)
            .map(|i| i.offset)
    };
    let mut last = None;
    let mut result = 0;
    wait_until(Duration::from_secs(60), "the ingest settles", || {
        let now = find();
        let settled = now.is_some_and(|o| o > 0) && now == last;
        last = now;
        result = now.unwrap_or(0);
        if !settled {
            std::thread::sleep(Duration::from_millis(450));
        }
        settled
    });
    result
}

#[test]
fn a_killed_pull_resumes_and_fetches_only_what_is_missing() {
    let daemon = Daemon::start();
    let (registry, image) = registry_with_large_image(&daemon, 3, 8 << 20);
    let proxy = TokenProxy::start_open(registry.addr());
    let reference = proxy.reference("large:v1");
    let ns = fresh_namespace(&daemon);
    let top = image.layer_digests.last().expect("layers").clone();
    let lower: Vec<String> = image.layer_digests[..2].to_vec();

    // The top layer's transfer hangs halfway; the others complete.
    proxy.stall_once(&top);
    let mut pull = spawn_berthctl(&daemon, &ns, &["images", "pull", &reference]);
    wait_until(
        Duration::from_secs(120),
        "the lower layers are stored",
        || {
            let stored = content_digests(&daemon, &ns);
            lower.iter().all(|d| stored.contains(d))
        },
    );
    settled_offset(&daemon, &ns, &layer_ref(&top));
    pull.signal(rustix::process::Signal::KILL);
    assert!(
        pull.wait_timeout(Duration::from_secs(10)).is_some(),
        "berthctl did not die"
    );
    let offset = settled_offset(&daemon, &ns, &layer_ref(&top));
    let top_size = image.blob(&top).len() as u64;
    assert!(
        offset > 0 && offset <= top_size / 2,
        "offset {offset} of {top_size}"
    );
    assert_eq!(
        image_names(&daemon, &ns),
        Vec::<String>::new(),
        "no image record yet"
    );

    let before_rerun = proxy.requests().len();
    let printed = berthctl_in_ok(&daemon, &ns, &["images", "pull", &reference]);
    assert!(printed.contains(&image.manifest_digest), "{printed}");
    let requests = proxy.requests();
    for digest in &lower {
        assert_eq!(
            blob_gets(&requests, before_rerun, digest),
            Vec::<Option<String>>::new(),
            "a stored layer was fetched again"
        );
    }
    assert_eq!(
        blob_gets(&requests, before_rerun, &top),
        vec![Some(format!("bytes={offset}-"))],
        "the top layer resumes from what the ingest held"
    );

    assert_eq!(
        image_digest(&daemon, &ns, &reference),
        image.manifest_digest
    );
    assert_eq!(
        content_digests(&daemon, &ns),
        image.blobs.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_blob_files_match_their_names(&daemon);
    assert_eq!(active_ingests(&daemon, &ns), Vec::<ActiveIngest>::new());
    assert_unpacked_once(&daemon, &ns, &image.chain_ids());
    // The config was stored by the killed pull too: not fetched again either.
    assert_eq!(
        blob_gets(&requests, before_rerun, &image.config_digest),
        Vec::<Option<String>>::new(),
        "the stored config was fetched again"
    );
}

#[test]
fn two_pulls_at_once_apply_each_layer_once() {
    let daemon = Daemon::start();
    let (registry, image) = registry_with_large_image(&daemon, 4, 6 << 20);
    let proxy = TokenProxy::start_open(registry.addr());
    let reference = proxy.reference("large:v1");
    let ns = fresh_namespace(&daemon);

    let args = ["--format", "json", "images", "pull", &reference];
    let commands: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = berthctl_registry_support::registry_command(&daemon, &ns, &args);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd
        })
        .collect();
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut cmd| cmd.spawn().expect("starting berthctl"))
        .collect();
    let outcomes: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("waiting for berthctl");
            assert!(
                out.status.success(),
                "a concurrent pull failed: {}\ndaemon log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                daemon.log_tail(30)
            );
            serde_json::from_slice(&out.stdout).expect("pull --format json prints JSON")
        })
        .collect();

    let layers = image.layer_digests.len() as u64;
    let mut applied = 0;
    for outcome in &outcomes {
        assert_eq!(
            outcome["digest"],
            image.manifest_digest.as_str(),
            "{outcome}"
        );
        let unpacked = &outcome["unpacked"];
        let accounted = ["applied", "already_unpacked", "unpacked_by_other"]
            .iter()
            .map(|k| unpacked[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        assert_eq!(
            accounted, layers,
            "every layer accounted for once: {outcome}"
        );
        applied += unpacked["applied"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        applied, layers,
        "each layer applied by one pull only: {outcomes:?}"
    );
    let fetched: u64 = outcomes
        .iter()
        .map(|o| o["bytes_fetched"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        fetched <= image.total_size(),
        "{fetched} bytes fetched for a {} byte image",
        image.total_size()
    );
    let requests = proxy.requests();
    for digest in &image.layer_digests {
        assert_eq!(
            blob_gets(&requests, 0, digest).len(),
            1,
            "layer {digest} fetched more than once"
        );
    }
    assert_unpacked_once(&daemon, &ns, &image.chain_ids());
    assert_eq!(active_ingests(&daemon, &ns), Vec::<ActiveIngest>::new());
}

#[test]
fn unknown_images_are_not_found_and_leave_nothing() {
    let daemon = Daemon::start();
    let registry = LocalRegistry::start();
    busybox_in_registry(&registry, daemon.dir(), "busybox:v1");
    let ns = fresh_namespace(&daemon);

    for missing in ["busybox:nope", "nothere:v1"] {
        let reference = registry.reference(missing);
        let message = berthctl_in_error(&daemon, &ns, &["images", "pull", &reference]);
        assert!(
            message.contains(&reference) && message.contains("not found"),
            "{message}"
        );
        assert_nothing_half_written(&daemon, &ns, |_| false);
    }
}

#[test]
fn an_unreachable_registry_fails_fast_naming_it() {
    let daemon = Daemon::start();
    let ns = fresh_namespace(&daemon);
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let message = berthctl_in_error(
        &daemon,
        &ns,
        &["images", "pull", &format!("{addr}/busybox:v1")],
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        message.contains(&addr) && message.contains("unreachable"),
        "{message}"
    );
    assert_nothing_half_written(&daemon, &ns, |_| false);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused_and_not_kept() {
    let daemon = Daemon::start();
    let registry = LocalRegistry::start();
    let image = busybox_in_registry(&registry, daemon.dir(), "busybox:v1");
    let proxy = TokenProxy::start_open(registry.addr());
    let layer = image.layer_digests[0].clone();
    proxy.corrupt(&layer);
    let ns = fresh_namespace(&daemon);

    let message = berthctl_in_error(
        &daemon,
        &ns,
        &["images", "pull", &proxy.reference("busybox:v1")],
    );
    assert!(
        message.contains(&layer) && message.contains("mismatch"),
        "{message}"
    );
    // Wrong bytes are not kept for a resume to build on.
    assert_nothing_half_written(&daemon, &ns, |_| false);
    assert!(!daemon.blobs_on_disk().contains(&layer));

    // Served right, the same image pulls whole.
    let reference = registry.reference("busybox:v1");
    berthctl_in_ok(&daemon, &ns, &["images", "pull", &reference]);
    assert_eq!(
        image_digest(&daemon, &ns, &reference),
        image.manifest_digest
    );
    assert_unpacked_once(&daemon, &ns, &image.chain_ids());
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let daemon = Daemon::start();
    let registry = LocalRegistry::start();
    let archive = daemon.dir().join("multiarch.tar");
    let image = multiarch_oci_archive(&archive, "localhost/multi:v1").expect("building");
    registry.push_oci_archive(&archive, "multi:v1", true);
    let proxy = TokenProxy::start_open(registry.addr());
    let manifest = image.image("linux/amd64").manifest_digest.clone();
    proxy.corrupt(&manifest);
    let ns = fresh_namespace(&daemon);

    let message = berthctl_in_error(
        &daemon,
        &ns,
        &["images", "pull", &proxy.reference("multi:v1")],
    );
    assert!(
        message.contains(&manifest) && message.contains("mismatch"),
        "{message}"
    );
    assert_nothing_half_written(&daemon, &ns, |_| false);
}

#[test]
fn a_stalled_transfer_fails_within_the_stall_timeout_and_a_retry_completes() {
    let daemon = Daemon::start();
    let (registry, image) = registry_with_large_image(&daemon, 1, 8 << 20);
    let proxy = TokenProxy::start_open(registry.addr());
    let reference = proxy.reference("large:v1");
    let layer = image.layer_digests[0].clone();
    let ns = fresh_namespace(&daemon);

    proxy.stall_once(&layer);
    let started = Instant::now();
    let message = berthctl_in_error(
        &daemon,
        &ns,
        &["images", "pull", "--stall-timeout", "2s", &reference],
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "failed after {took:?}"
    );
    assert!(
        message.contains("no progress") && message.contains(&layer),
        "{message}"
    );
    // At most the layer's own ingest remains, to be resumed.
    let layer_ingest = layer_ref(&layer);
    assert_nothing_half_written(&daemon, &ns, |i| i.reference == layer_ingest);
    let kept = active_ingests(&daemon, &ns)
        .into_iter()
        .find(|i| i.reference == layer_ingest)
        .map(|i| i.offset);

    let before_retry = proxy.requests().len();
    berthctl_in_ok(
        &daemon,
        &ns,
        &["images", "pull", "--stall-timeout", "2s", &reference],
    );
    assert_eq!(
        image_digest(&daemon, &ns, &reference),
        image.manifest_digest
    );
    let expected_range = kept.filter(|&o| o > 0).map(|o| format!("bytes={o}-"));
    assert_eq!(
        blob_gets(&proxy.requests(), before_retry, &layer),
        vec![expected_range],
        "the retry asks for what the kept ingest lacks"
    );
    assert_unpacked_once(&daemon, &ns, &image.chain_ids());
    let json = berthctl_in_json(&daemon, &ns, &["images", "check"]);
    assert_eq!(json[0]["complete"], true, "{json}");
}
