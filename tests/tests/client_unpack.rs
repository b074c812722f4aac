//! berth-client's unpack against a real daemon: two unpackers of one image apply each
//! layer once (containerd#5675 applied them twice), an extraction snapshot left by a
//! dead unpacker is taken over, a live one is waited for, and a stopped unpack leaves no
//! extraction snapshot behind.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use berth_client::archive::{import, ImportOptions};
use berth_client::content::blob_info;
use berth_client::image::{resolve_named_image, snapshot_exists, ResolvedImage};
use berth_client::labels::{snapshot_ref_label, UNCOMPRESSED};
use berth_client::owner::{start_time_of, UnpackOwner};
use berth_client::platform::Platform;
use berth_client::progress::{ItemState, Progress, ProgressEvent};
use berth_client::proto::containerd::services::snapshots::v1::PrepareSnapshotRequest;
use berth_client::unpack::{
    extract_key, unpack_image, unpack_layers, UnpackPlan, DEFAULT_SNAPSHOTTER, OWNER_LABEL,
};
use berth_client::{connect, Api};
use berth_tests::fixtures::many_layers_archive;
use berth_tests::steps::snapshots_ls;
use berth_tests::{unique_id, Daemon};
use tokio::sync::mpsc;

/// Layers of the test image.
const LAYERS: usize = 5;
/// Name of the test image.
const IMAGE: &str = "localhost/unpack:1";
/// How long a test waits for something another unpacker does.
const PATIENCE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Imports the many-layers image into `namespace` without unpacking it; returns the
/// connection and the image read back from the store.
async fn packed_image(daemon: &Daemon, namespace: &str, archive: &Path) -> (Api, ResolvedImage) {
    many_layers_archive(archive, IMAGE, LAYERS).unwrap();
    let api = connect(&daemon.socket(), namespace).await.unwrap();
    let options = ImportOptions {
        unpack: false,
        ..ImportOptions::default()
    };
    import(&api, std::fs::File::open(archive).unwrap(), &options)
        .await
        .unwrap();
    let (_, image) = resolve_named_image(&api, IMAGE, &Platform::host())
        .await
        .unwrap();
    (api, image)
}

/// Asserts the namespace holds exactly one committed snapshot per chain ID and nothing
/// else (no extraction snapshot left).
fn assert_only_chain_snapshots(daemon: &Daemon, namespace: &str, image: &ResolvedImage) {
    let rows = snapshots_ls(daemon, namespace);
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let expected: BTreeSet<String> = image.chain_ids().into_iter().collect();
    assert_eq!(keys.len(), expected.len(), "{keys:?}");
    assert_eq!(
        keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>(),
        expected
    );
    assert!(rows.iter().all(|r| r.kind == "Committed"), "{rows:?}");
}

/// Waits for a progress event saying `WaitingForOther`.
async fn wait_for_waiting(events: &mut mpsc::UnboundedReceiver<ProgressEvent>) {
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            if matches!(event, ProgressEvent::Item(ref i) if i.state == ItemState::WaitingForOther)
            {
                return;
            }
        }
        panic!("progress ended without WaitingForOther");
    })
    .await
    .expect("the unpacker reports that it waits for the other one");
}

/// Waits until the snapshot `key` exists.
async fn wait_for_snapshot(api: &Api, key: &str) {
    tokio::time::timeout(PATIENCE, async {
        while !snapshot_exists(api, DEFAULT_SNAPSHOTTER, key)
            .await
            .unwrap()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("snapshot {key:?} never appeared"));
}

/// Prepares the extraction snapshot of the image's first layer as `owner` would have.
async fn prepare_as(api: &Api, image: &ResolvedImage, owner: &UnpackOwner) {
    let chain = image.chain_ids();
    api.snapshots()
        .prepare(PrepareSnapshotRequest {
            snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
            key: extract_key(&chain[0]),
            parent: String::new(),
            // A root, so no collection removes it before the unpacker meets it.
            labels: HashMap::from([
                (OWNER_LABEL.to_string(), owner.to_label()),
                ("containerd.io/gc.root".to_string(), "test".to_string()),
            ]),
        })
        .await
        .expect("preparing an extraction snapshot by hand");
}

#[test]
fn two_unpackers_of_one_image_apply_each_layer_once() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("many.tar");
    runtime().block_on(async {
        let (api, image) = packed_image(&daemon, &ns, &archive).await;
        let plan = UnpackPlan::of(&image, DEFAULT_SNAPSHOTTER);
        let chain = image.chain_ids();

        // The first unpacker claims layer 0 and then waits for its blob to "arrive".
        let (arrivals, arrived) = mpsc::channel(LAYERS);
        let first = tokio::spawn({
            let (api, plan) = (api.clone(), plan.clone());
            async move { unpack_layers(&api, &plan, Some(arrived), &Progress::none()).await }
        });
        wait_for_snapshot(&api, &extract_key(&chain[0])).await;

        // The second finds layer 0 claimed by a live unpacker and waits for it.
        let (progress, mut events) = Progress::channel();
        let second = tokio::spawn({
            let (api, image) = (api.clone(), image.clone());
            async move { unpack_image(&api, &image, DEFAULT_SNAPSHOTTER, &progress).await }
        });
        wait_for_waiting(&mut events).await;
        for (layer, _) in &plan.layers {
            arrivals.send(layer.clone()).await.unwrap();
        }

        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap().unwrap();
        assert_eq!(
            first.applied + second.applied,
            LAYERS,
            "each layer applied exactly once: {first:?} {second:?}"
        );
        assert!(first.applied >= 1, "{first:?}");
        assert!(second.unpacked_by_other >= 1, "{second:?}");
        assert_eq!(first.top_chain_id, chain.last().cloned());
        assert_eq!(second.top_chain_id, chain.last().cloned());
        assert_only_chain_snapshots(&daemon, &ns, &image);

        // The labels containerd's collector and ctr rely on.
        let config = blob_info(&api, &image.config_descriptor().digest)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            config.labels.get(&snapshot_ref_label(DEFAULT_SNAPSHOTTER)),
            chain.last()
        );
        for (layer, diff_id) in image.layers() {
            let info = blob_info(&api, &layer.digest).await.unwrap().unwrap();
            assert_eq!(info.labels.get(UNCOMPRESSED), Some(&diff_id));
        }

        // A third unpack finds everything done.
        let third = unpack_image(&api, &image, DEFAULT_SNAPSHOTTER, &Progress::none())
            .await
            .unwrap();
        assert_eq!((third.applied, third.already_unpacked), (0, LAYERS));
    });
}

#[test]
fn a_dead_unpackers_snapshot_is_taken_over_and_a_live_ones_is_waited_for() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("many.tar");
    runtime().block_on(async {
        let (api, image) = packed_image(&daemon, &ns, &archive).await;

        // A process that exited: its claim is stale.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id();
        let start_time = start_time_of(pid).unwrap_or(1);
        gone.wait().unwrap();
        let dead = UnpackOwner {
            pid,
            start_time,
            token: 7,
        };
        prepare_as(&api, &image, &dead).await;
        let outcome = unpack_image(&api, &image, DEFAULT_SNAPSHOTTER, &Progress::none())
            .await
            .unwrap();
        assert_eq!(outcome.applied, LAYERS);
        assert_only_chain_snapshots(&daemon, &ns, &image);
    });

    // A live process of its own: waited for until it dies.
    let ns = unique_id("ns");
    runtime().block_on(async {
        let (api, image) = packed_image(&daemon, &ns, &archive).await;
        let mut sleeper = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let live = UnpackOwner {
            pid: sleeper.id(),
            start_time: start_time_of(sleeper.id()).unwrap(),
            token: 7,
        };
        prepare_as(&api, &image, &live).await;
        let (progress, mut events) = Progress::channel();
        let unpack = tokio::spawn({
            let (api, image) = (api.clone(), image.clone());
            async move { unpack_image(&api, &image, DEFAULT_SNAPSHOTTER, &progress).await }
        });
        wait_for_waiting(&mut events).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!unpack.is_finished(), "it must wait while the owner lives");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let outcome = tokio::time::timeout(PATIENCE, unpack)
            .await
            .expect("the unpack takes over once the owner is gone")
            .unwrap()
            .unwrap();
        assert_eq!(outcome.applied, LAYERS);
        assert_only_chain_snapshots(&daemon, &ns, &image);
    });
}

#[test]
fn a_stopped_unpack_leaves_no_extraction_snapshot() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("many.tar");
    runtime().block_on(async {
        let (api, image) = packed_image(&daemon, &ns, &archive).await;
        let plan = UnpackPlan::of(&image, DEFAULT_SNAPSHOTTER);
        let (arrivals, arrived) = mpsc::channel(LAYERS);
        arrivals.send(plan.layers[0].0.clone()).await.unwrap();
        let unpack = tokio::spawn({
            let (api, plan) = (api.clone(), plan.clone());
            async move { unpack_layers(&api, &plan, Some(arrived), &Progress::none()).await }
        });
        let chain = image.chain_ids();
        wait_for_snapshot(&api, &extract_key(&chain[1])).await;
        drop(arrivals); // the transfer of layer 1 stopped
        let error = unpack.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("stopped"), "{error}");
        let rows = snapshots_ls(&daemon, &ns);
        assert!(
            rows.iter().all(|r| !r.key.starts_with("extract")),
            "extraction snapshot left: {rows:?}"
        );
    });
}
