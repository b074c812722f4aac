//! berth-client's pull and push against a real local registry (Debian's
//! `docker-registry`) and a real daemon: the host's platform of an index is pulled and
//! runs under ctr, a pull resumes an interrupted layer, two pulls at once apply each
//! layer once, a push and a pull back give the same digests, and bytes that do not
//! match their digest fail the pull and leave nothing visible.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_client::content::{ingest_ref, ingest_status, IngestOutcome};
use berth_client::image::get_image;
use berth_client::oci::Descriptor;
use berth_client::proto::containerd::services::content::v1::{WriteAction, WriteContentRequest};
use berth_client::pull::{pull, PullOptions, PullOutcome};
use berth_client::push::{push, PushOptions};
use berth_client::{connect, Api, ClientError};
use berth_tests::fixtures::large::large_archive;
use berth_tests::fixtures::multiarch::multiarch_oci_archive;
use berth_tests::registry::LocalRegistry;
use berth_tests::steps::{content_digests, image_names, snapshots_ls, wait_until};
use berth_tests::tasks::TaskCleanup;
use berth_tests::{ctr_ok, unique_id, Daemon};
use tokio::sync::mpsc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Pulls `reference` into `namespace` with default options.
async fn pull_into(
    daemon: &Daemon,
    namespace: &str,
    reference: &str,
) -> Result<PullOutcome, ClientError> {
    let api = connect(&daemon.socket(), namespace).await?;
    pull(&api, reference, &PullOptions::default()).await
}

/// Committed snapshot keys of `namespace`; panics if an extraction snapshot is left.
fn committed_snapshots(daemon: &Daemon, namespace: &str) -> BTreeSet<String> {
    let rows = snapshots_ls(daemon, namespace);
    assert!(rows.iter().all(|r| r.kind == "Committed"), "{rows:?}");
    rows.into_iter().map(|r| r.key).collect()
}

#[test]
fn the_hosts_platform_of_an_index_is_pulled_unpacked_and_run() {
    let registry = LocalRegistry::start();
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("multiarch.tar");
    let image = multiarch_oci_archive(&archive, "localhost/multiarch:1").unwrap();
    registry.push_oci_archive(&archive, "multiarch:1", true);
    let reference = registry.reference("multiarch:1");

    let outcome = runtime()
        .block_on(pull_into(&daemon, &ns, &reference))
        .unwrap();
    assert_eq!(outcome.image.name, reference);
    assert_eq!(outcome.image.target.digest, image.index_digest);
    let amd64 = image.image("linux/amd64");
    let unpacked = outcome.unpacked.clone().expect("the image was unpacked");
    assert_eq!(unpacked.applied, amd64.layer_digests.len());
    assert_eq!(unpacked.top_chain_id, amd64.chain_ids().pop());
    let arm64 = image.image("linux/arm64");
    let transferred: BTreeSet<&str> = outcome.transfers.iter().map(|(d, _)| d.as_str()).collect();
    assert!(transferred.contains(amd64.manifest_digest.as_str()));
    assert!(
        !transferred.contains(arm64.manifest_digest.as_str()),
        "arm64 was not pulled"
    );

    let mut expected: BTreeSet<String> = amd64.blobs.keys().cloned().collect();
    expected.insert(image.index_digest.clone());
    wait_until(
        Duration::from_secs(20),
        "content ls lists the pulled blobs",
        || content_digests(&daemon, &ns) == expected,
    );
    assert_eq!(
        committed_snapshots(&daemon, &ns),
        amd64.chain_ids().into_iter().collect()
    );
    let check = ctr_ok(&daemon, &["-n", &ns, "images", "check"]);
    assert!(
        check.contains("complete") && check.trim_end().ends_with("true"),
        "{check}"
    );
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "pulled");
    let out = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            &reference,
            "pulled",
            "cat",
            "/platform",
        ],
    );
    assert_eq!(out, "linux/amd64\n");

    // Pulled again: nothing is fetched.
    let again = runtime()
        .block_on(pull_into(&daemon, &ns, &reference))
        .unwrap();
    assert_eq!(again.bytes_fetched(), 0, "{:?}", again.transfers);
}

/// Writes the first `len` bytes of `blob` into the ingest a pull of it uses, and leaves
/// it unfinished, as an interrupted pull would.
async fn interrupted_ingest(api: &Api, blob: &Descriptor, data: &[u8]) {
    let (requests, outgoing) = mpsc::channel(4);
    let receiver = futures::stream::unfold(outgoing, |mut r| async move {
        r.recv().await.map(|item| (item, r))
    });
    requests
        .send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: ingest_ref(blob),
            total: blob.size as i64,
            expected: blob.digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut responses = api.content().write(receiver).await.unwrap().into_inner();
    responses.message().await.unwrap();
    requests
        .send(WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: 0,
            data: data.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    responses.message().await.unwrap();
    drop(requests);
    while let Ok(Some(_)) = responses.message().await {}
}

#[test]
fn an_interrupted_pull_fetches_only_what_is_missing() {
    let registry = LocalRegistry::start();
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("large.tar");
    let image = large_archive(&archive, "localhost/large:1", 2, 4 << 20).unwrap();
    registry.push_oci_archive(&archive, "large:1", false);
    let reference = registry.reference("large:1");
    let layer = Descriptor {
        media_type: berth_tests::fixtures::oci::MEDIA_TYPE_LAYER_TAR.to_string(),
        digest: image.layer_digests[1].clone(),
        size: image.blob(&image.layer_digests[1]).len() as u64,
        ..Descriptor::default()
    };
    let half = 1 << 20;

    let outcome = runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        interrupted_ingest(&api, &layer, &image.blob(&layer.digest)[..half]).await;
        let status = ingest_status(&api, &ingest_ref(&layer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.offset, half as u64);
        pull(&api, &reference, &PullOptions::default())
            .await
            .unwrap()
    });
    let resumed = outcome
        .transfers
        .iter()
        .find(|(d, _)| *d == layer.digest)
        .map(|(_, o)| *o);
    assert_eq!(
        resumed,
        Some(IngestOutcome::Written {
            resumed_from: half as u64,
            sent: layer.size - half as u64
        }),
        "{:?}",
        outcome.transfers
    );
    assert_eq!(
        committed_snapshots(&daemon, &ns),
        image.chain_ids().into_iter().collect()
    );
}

#[test]
fn two_pulls_of_one_image_at_once_fetch_and_apply_each_layer_once() {
    let registry = LocalRegistry::start();
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("large.tar");
    let image = large_archive(&archive, "localhost/large:2", 4, 2 << 20).unwrap();
    registry.push_oci_archive(&archive, "large:2", false);
    let reference = registry.reference("large:2");

    let (first, second) = runtime().block_on(async {
        tokio::join!(
            pull_into(&daemon, &ns, &reference),
            pull_into(&daemon, &ns, &reference)
        )
    });
    let (first, second) = (first.unwrap(), second.unwrap());
    let applied =
        first.unpacked.as_ref().unwrap().applied + second.unpacked.as_ref().unwrap().applied;
    assert_eq!(applied, image.layer_digests.len(), "{first:?}\n{second:?}");
    let layer_bytes: u64 = image
        .layer_digests
        .iter()
        .map(|d| image.blob(d).len() as u64)
        .sum();
    let fetched = |outcome: &PullOutcome| -> u64 {
        outcome
            .transfers
            .iter()
            .filter(|(d, _)| image.layer_digests.contains(d))
            .map(|(_, o)| match o {
                IngestOutcome::Written { sent, .. } => *sent,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(
        fetched(&first) + fetched(&second),
        layer_bytes,
        "each layer fetched once"
    );
    assert_eq!(
        committed_snapshots(&daemon, &ns),
        image.chain_ids().into_iter().collect()
    );
    assert_eq!(image_names(&daemon, &ns), [reference]);
}

#[test]
fn a_pushed_image_pulls_back_with_the_same_digests() {
    let registry = LocalRegistry::start();
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("multiarch.tar");
    let image = multiarch_oci_archive(&archive, "localhost/multiarch:2").unwrap();
    registry.push_oci_archive(&archive, "multiarch:2", true);
    let source = registry.reference("multiarch:2");

    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        // All platforms in the store: the whole index goes back, same digest.
        let options = PullOptions {
            all_platforms: true,
            ..PullOptions::default()
        };
        pull(&api, &source, &options).await.unwrap();
        let copy = registry.reference("copy:all");
        let pushed = push(&api, &source, &copy, &PushOptions::default())
            .await
            .unwrap();
        assert_eq!(pushed.target.digest, image.index_digest);
        assert!(!pushed.uploaded.is_empty() || !pushed.already_there.is_empty());

        let fresh = api.in_namespace(&unique_id("fresh")).unwrap();
        let back = pull(&fresh, &copy, &PullOptions::default()).await.unwrap();
        assert_eq!(back.image.target.digest, image.index_digest);
        let record = get_image(&fresh, &copy).await.unwrap();
        assert_eq!(record.target.digest, image.index_digest);
    });

    // Only the host's platform in the store: its manifest goes, under the tag.
    let ns = unique_id("ns");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        pull(&api, &source, &PullOptions::default()).await.unwrap();
        let copy = registry.reference("copy:host");
        let pushed = push(&api, &source, &copy, &PushOptions::default())
            .await
            .unwrap();
        let amd64 = image.image("linux/amd64");
        assert_eq!(pushed.target.digest, amd64.manifest_digest);
        let fresh = api.in_namespace(&unique_id("fresh")).unwrap();
        let back = pull(&fresh, &copy, &PullOptions::default()).await.unwrap();
        assert_eq!(back.image.target.digest, amd64.manifest_digest);
    });
}

#[test]
fn bytes_that_do_not_match_their_digest_fail_the_pull_and_leave_nothing() {
    let registry = LocalRegistry::start();
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("large.tar");
    let image = large_archive(&archive, "localhost/large:3", 2, 1 << 20).unwrap();
    registry.push_oci_archive(&archive, "large:3", false);
    let reference = registry.reference("large:3");

    // The registry's stored copy of layer 1 is corrupted (same size, other bytes).
    let hex = &image.layer_digests[1][7..];
    let data = registry
        .dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("the registry's copy of the layer");
    bytes[4096] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let error = runtime()
        .block_on(pull_into(&daemon, &ns, &reference))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, ClientError::DigestMismatch { .. }),
        "{text}"
    );
    assert!(text.contains(hex), "{text}");
    assert!(image_names(&daemon, &ns).is_empty(), "no image record");
    assert!(
        content_digests(&daemon, &ns).is_empty(),
        "nothing left visible"
    );
    assert!(committed_snapshots(&daemon, &ns).is_empty());
    let active = ctr_ok(&daemon, &["-n", &ns, "content", "active"]);
    assert!(!active.contains(hex), "the bad ingest is gone: {active}");

    // An image the registry does not have: a clear error naming it.
    let missing = registry.reference("nothing:here");
    let error = runtime()
        .block_on(pull_into(&daemon, &ns, &missing))
        .unwrap_err();
    assert!(error.to_string().contains("not found"), "{error}");
    assert!(!error.to_string().contains('\n'));
}
